package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
)

//go:embed default.yaml
var defaultConfig []byte

// loadConfig reads path, or the built-in demo config when path is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(defaultConfig)
	}
	return config.Load(path)
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlagSet("run", stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logger, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "portmux: %v\n", err)
		return 1
	}
	defer logger.Sync()
	if *path == "" {
		logger.Info("no config file given: serving the built-in demo config", zap.String("see", "portmux run -c FILE"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("portmux stopped", zap.Error(err))
		return 1
	}
	return 0
}

// serve runs portmux with cfg until ctx is cancelled, then drains.
func serve(ctx context.Context, cfg *config.Config, logger *zap.Logger) error {
	rt := newApp(cfg, logger)
	table := rt.table(cfg)
	srv := mux.NewServer(table, mux.Options{
		SniffTimeout:  cfg.SniffTimeout,
		MaxSniffBytes: cfg.SniffMaxBytes,
		Logger:        logger,
	})

	// Open every listener before serving any, so a bad address fails the
	// start instead of leaving a half-open set.
	var lns []net.Listener
	for _, addr := range cfg.Listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	errc := make(chan error, len(lns))
	var wg sync.WaitGroup
	for _, ln := range lns {
		logger.Info("listening", zap.String("addr", ln.Addr().String()), zap.Int("routes", len(table.Routes())))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, mux.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		}()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	logger.Info("shutting down: draining live connections", zap.Duration("grace", cfg.ShutdownGrace))
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	rt.shutdown(drainCtx)
	if err := srv.Shutdown(drainCtx); err != nil {
		logger.Warn("drain grace ended: closed the remaining connections", zap.Error(err))
	}
	wg.Wait()
	rt.close()
	logger.Info("stopped")
	return serveErr
}

// newLogger builds the zap logger: JSON (production) or console
// (development), at the configured level.
func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zap.ParseAtomicLevel(c.Level)
	if err != nil {
		return nil, err
	}
	// No sampling: every finished connection gets its one line.
	var enc zapcore.Encoder
	if c.Format == "console" {
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core), nil
}
