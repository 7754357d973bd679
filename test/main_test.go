// Package test holds portmux's end-to-end tests: the real binary (built once, with
// -race) in front of real protocol peers, all on loopback.
//
// Typical usage:
//
//	go test -race ./test/                  # everything
//	go test -race -run Peer ./test/        # only the peers, no portmux needed
//	TEST_PORTMUX_BIN=/path/to/portmux go test -race -run E2E ./test/
package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// portmuxBin is the binary under test; buildErr is set when building it failed.
var (
	portmuxBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if bin := os.Getenv("TEST_PORTMUX_BIN"); bin != "" {
		portmuxBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "portmux-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	portmuxBin = filepath.Join(dir, "portmux")
	// Build once for the whole run. A failure does not stop the peer self-tests:
	// every test that needs the binary reports buildErr.
	cmd := exec.Command("go", "build", "-race", "-o", portmuxBin, "./cmd/portmux")
	cmd.Dir = ".."
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		buildErr = fmt.Errorf("go build -race ./cmd/portmux: %v\n%s", err, out.String())
	}
	return m.Run()
}
