package tlsutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Replica processes for the cluster tests (cluster_test.go): this test
// binary, re-run with TestReplicaProcess only, is a portmux replica that
// shares nothing with the test process but Redis (and Pebble).

// replicaEnv turns this test binary into a replica process: it holds the
// replicaConfig (JSON) that TestReplicaProcess runs.
const replicaEnv = "TLSUTIL_TEST_REPLICA"

// replicaConfig is what a replica process runs.
type replicaConfig struct {
	Storage, CA string
	Roots       []byte
	// DisableHTTP and DisableTLSALPN turn off a challenge type.
	DisableHTTP, DisableTLSALPN bool
	// TLSListeners and HTTPListeners are inherited listeners, as file
	// descriptors 3, 4, ... (TLS first). Without TLS listeners the replica
	// opens its own on loopback; its port is the ChallengePort.
	TLSListeners, HTTPListeners int
	// Manage is given to Manage (in the background) once serving.
	Manage []string
}

// TestReplicaProcess is a replica process of the cluster tests: it serves
// TLSConfig and HTTPChallengeHandler on its listeners, logs JSON to
// stderr, says "replica ready" on stdout and runs until stdin closes.
func TestReplicaProcess(t *testing.T) {
	raw := os.Getenv(replicaEnv)
	if raw == "" {
		t.Skip("runs only as a replica process started by the cluster tests")
	}
	var cfg replicaConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	fd := 3
	inherit := func(n int) []net.Listener {
		var lns []net.Listener
		for range n {
			f := os.NewFile(uintptr(fd), "listener"+strconv.Itoa(fd))
			fd++
			ln, err := net.FileListener(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
		}
		return lns
	}
	tlsLns, httpLns := inherit(cfg.TLSListeners), inherit(cfg.HTTPListeners)
	if len(tlsLns) == 0 {
		_, tlsLns = loopback(t)
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	logger := zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zapcore.DebugLevel))
	m := newManager(t, Options{
		CA: cfg.CA, TrustedRoots: cfg.Roots, Email: "test@example.com", Agreed: true,
		Storage: cfg.Storage, ChallengePort: tlsLns[0].Addr().(*net.TCPAddr).Port,
		DisableHTTPChallenge: cfg.DisableHTTP, DisableTLSALPNChallenge: cfg.DisableTLSALPN,
		Logger: logger,
	})
	serveTLS(t, tlsLns, m.TLSConfig())
	if len(httpLns) > 0 {
		serveHTTP(t, httpLns, m.HTTPChallengeHandler(http.NotFoundHandler()))
	}
	if len(cfg.Manage) > 0 {
		if err := m.Manage(context.Background(), cfg.Manage); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("replica ready")
	io.Copy(io.Discard, os.Stdin)
}

// replica is a running replica process.
type replica struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	log    *lockedBuffer // its stderr: JSON log lines
	exited chan struct{}
}

// readyWriter signals once the replica says it is ready.
type readyWriter struct {
	mu    sync.Mutex
	buf   []byte
	ready chan struct{}
	once  sync.Once
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if bytes.Contains(w.buf, []byte("replica ready\n")) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// startReplica runs TestReplicaProcess in a new process with cfg, handing
// it lns (closed here), and waits until it serves. The process ends with
// the test.
func startReplica(t *testing.T, cfg replicaConfig, lns ...net.Listener) *replica {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplicaProcess$", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), replicaEnv+"="+string(js))
	for _, ln := range lns {
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	r := &replica{cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	out := &readyWriter{ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, r.log
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i, f := range cmd.ExtraFiles { // the replica has its own copies
		f.Close()
		lns[i].Close()
	}
	go func() {
		cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.stdin.Close() // asks it to stop
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			r.kill()
		}
		if t.Failed() || os.Getenv("TLSUTIL_DUMP") != "" {
			r.log.mu.Lock()
			t.Logf("replica log:\n%s", r.log.buf.String())
			r.log.mu.Unlock()
			out.mu.Lock()
			t.Logf("replica stdout:\n%s", out.buf)
			out.mu.Unlock()
		}
	})
	select {
	case <-out.ready:
	case <-r.exited:
		t.Fatal("replica process exited before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("replica process not ready within 30s")
	}
	return r
}

// kill ends the replica at once (SIGKILL), as a crash would.
func (r *replica) kill() {
	r.cmd.Process.Kill()
	<-r.exited
}

// served counts the replica's logged answers to challenge (http-01 or
// tls-alpn-01) that came from storage rather than its own memory.
func (r *replica) served(challenge string) int {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	n := 0
	for _, line := range strings.Split(r.log.buf.String(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		msg, _ := e["msg"].(string)
		if strings.HasPrefix(msg, "served key authentication") && e["challenge"] == challenge && e["distributed"] == true {
			n++
		}
	}
	return n
}
