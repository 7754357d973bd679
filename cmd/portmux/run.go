package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
	"github.com/portmux/portmux/proxy"
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
	watch := fs.Bool("watch", false, "reload when the config file changes (polled every 2s)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logger, level, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "portmux: %v\n", err)
		return 1
	}
	defer logger.Sync()
	// certmagic and net/http log a few lines through the standard logger.
	defer zap.RedirectStdLog(logger.Named("stdlog"))()
	defer tuneMemory(logger)()
	if *path == "" {
		logger.Info("no config file given: serving the built-in demo config", zap.String("see", "portmux run -c FILE"))
	}
	a := newApp(*path, logger, level)
	cfg, hash, err := a.readConfig()
	if err != nil {
		logger.Error("config", errorFields(err)...)
		return 1
	}
	if err := a.start(cfg, hash); err != nil {
		logger.Error("portmux failed to start", zap.Error(err))
		return 1
	}

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	stopWatch := make(chan struct{})
	if *watch && *path != "" {
		go watchFile(*path, func() string { return a.gen.Load().hash }, a.reload, stopWatch)
	}
	for sig := range signals {
		if sig == syscall.SIGHUP {
			logger.Info("SIGHUP: reloading config")
			a.reload() // logged and counted; the old config keeps serving on error
			continue
		}
		break
	}
	close(stopWatch)
	a.shutdown()
	return 0
}

// watchFile calls reload whenever path's content differs from the config
// in use (running reports its hash). Polling the content (not inotify on
// the file) also follows a Kubernetes ConfigMap mount, whose files change
// by a symlink swap in their directory. A content that failed to load is
// not retried until it changes again.
func watchFile(path string, running func() string, reload func() error, stop <-chan struct{}) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	failed := ""
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		h := configHash(b)
		if h == running() || h == failed {
			continue
		}
		failed = ""
		if reload() != nil {
			failed = h
		}
	}
}

// newLogger builds the zap logger: JSON (production) or console
// (development), at the configured level, which reloads can change.
func newLogger(c config.Log, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	level, err := zap.ParseAtomicLevel(c.Level)
	if err != nil {
		return nil, level, err
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
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)), level, nil
}

// tcpTarget relays routed connections to a TCP backend.
type tcpTarget struct{ proxy.TCP }

func (t *tcpTarget) ServeConn(ctx context.Context, c *mux.Conn) mux.Result {
	st, err := t.ServeAs(ctx, c.NetConn, c.Prefix, c.RemoteAddr(), c.LocalAddr())
	return t.result(ctx, st, err)
}

// ServeConnAsync lets the relay finish the connection: nothing waits for
// an idle one (see proxy.Parker).
func (t *tcpTarget) ServeConnAsync(ctx context.Context, c *mux.Conn, done func(mux.Result)) {
	t.ServeAsync(ctx, c.NetConn, c.Prefix, c.RemoteAddr(), c.LocalAddr(), func(st proxy.Stats, err error) {
		done(t.result(ctx, st, err))
	})
}

func (t *tcpTarget) result(ctx context.Context, st proxy.Stats, err error) mux.Result {
	return mux.Result{Backend: t.Addr, Up: st.Up, Down: st.Down, Err: err, Outcome: outcomeOf(ctx, err)}
}

// outcomeOf labels a handler's error for the connection's log line.
func outcomeOf(ctx context.Context, err error) string {
	var dialErr *proxy.DialError
	var refused *proxy.RefusedError
	switch {
	case err == nil:
		return mux.OutcomeOK
	case errors.As(err, &dialErr):
		return mux.OutcomeDialFailed
	case errors.As(err, &refused):
		return mux.OutcomeBadRequest
	case errors.Is(err, proxy.ErrHeaderTimeout):
		return mux.OutcomeHeaderTimeout
	case errors.Is(err, proxy.ErrIdleTimeout):
		return mux.OutcomeIdleTimeout
	case ctx.Err() != nil:
		return mux.OutcomeShutdown
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return mux.OutcomeReset
	}
	return mux.OutcomeError
}

// errorFields are the fields a failed config load is logged with. A
// config.Error's problems, one per line in its Error, become a list (the
// error field joins them on one line): a JSON log line must not carry
// several lines in one string.
func errorFields(err error) []zap.Field {
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		return []zap.Field{zap.Error(err)}
	}
	return []zap.Field{
		zap.String("error", strings.Join(cerr.Problems, "; ")),
		zap.Strings("problems", cerr.Problems),
	}
}
