package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// soakConfig is portmux's config for the soak: one multiplexed port with
// an SSH route to a TCP echo, an L7 HTTP route, TLS passthrough by SNI and
// FTP through the gateway; the admin listener for /metrics.
const soakConfig = `# written by test/soak
listen: ["%[1]s"]
sniff_timeout: 1s
shutdown_grace: 2s
admin: {listen: "%[2]s"}
log: {level: warn, format: json}
tls: {storage: "%[3]s"}
routes:
  - name: tls-echo
    match: {protocol: tls, sni: [%[4]s]}
    to: "%[5]s"
  - name: web
    match: {protocol: http}
    to: "http://%[6]s"
  - name: ssh-echo
    match: {protocol: ssh}
    to: "%[7]s"
  - name: ftp
    match: {protocol: ftp}
    to: "%[8]s"
`

// portmuxProc is the portmux process under test, started by the soak.
type portmuxProc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	listen  string
	admin   string
	logPath string
}

// startPortmux writes the config into dir and starts bin on it, then waits
// until its admin listener reports ready.
func startPortmux(bin, dir string, b *backends) (*portmuxProc, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	p := &portmuxProc{
		listen:  fmt.Sprintf("127.0.0.1:%d", ports[0]),
		admin:   fmt.Sprintf("127.0.0.1:%d", ports[1]),
		logPath: filepath.Join(dir, "portmux.log"),
		exited:  make(chan struct{}),
	}
	cfg := fmt.Sprintf(soakConfig, p.listen, p.admin, filepath.Join(dir, "certs"), tlsName,
		b.tlsEcho.Addr(), b.origin.Addr(), b.echo.Addr(), b.ftp.addr())
	cfgPath := filepath.Join(dir, "portmux.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "validate", "-c", cfgPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("portmux validate: %v: %s", err, out)
	}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, "run", "-c", cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("portmux exited at start: %v (log: %s)", p.waitErr, p.logPath)
		case <-ctx.Done():
			p.stop()
			return nil, fmt.Errorf("portmux not ready after 20s (log: %s)", p.logPath)
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
	}
}

func (p *portmuxProc) pid() int { return p.cmd.Process.Pid }

func (p *portmuxProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the portmux process the soak started and waits for
// it (shutdown_grace is 2s); after 15s it is killed. It returns the exit
// error of a process that did not stop cleanly.
func (p *portmuxProc) stop() error {
	if !p.running() {
		return fmt.Errorf("portmux had already exited: %v", p.waitErr)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return errors.New("portmux did not stop within 15s of SIGTERM; killed")
	}
}

// logProblems counts the lines of portmux's log that report a panic, and
// those at warn or error level.
func (p *portmuxProc) logProblems() (panics, warnings int, sample []string) {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return 0, 0, nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, "panic"):
			panics++
		case strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`):
			warnings++
		default:
			continue
		}
		if len(sample) < 5 {
			sample = append(sample, line)
		}
	}
	return panics, warnings, sample
}
