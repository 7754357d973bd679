package test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	sshUser     = "tester"
	sshPassword = "s3cret"
	// genSeed seeds the bytes written by the SSH server's "gen N" command.
	genSeed = 0x6E6
)

// sshServer is a real SSH server (golang.org/x/crypto/ssh) with password auth and three
// exec commands:
//
//	cat    echo stdin to stdout until EOF
//	sink   read stdin to EOF, reply "<sha256 hex> <byte count>\n"
//	gen N  write N bytes of payload(genSeed, N)
//
// Each command ends with an exit-status request and a channel close.
type sshServer struct {
	*tcpServer
	HostKey ssh.PublicKey
}

// startSSHServer starts an SSH server on 127.0.0.1:0 with a fresh ed25519 host key.
func startSSHServer(t testing.TB) *sshServer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("host key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("host signer: %v", err)
	}
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pass []byte) (*ssh.Permissions, error) {
			if c.User() == sshUser && string(pass) == sshPassword {
				return nil, nil
			}
			return nil, fmt.Errorf("password rejected for %q", c.User())
		},
	}
	cfg.AddHostKey(signer)
	s := &sshServer{HostKey: signer.PublicKey()}
	s.tcpServer = startTCPServer(t, func(c net.Conn) { serveSSHConn(c, cfg) })
	return s
}

// serveSSHConn runs one SSH connection until the client disconnects.
func serveSSHConn(c net.Conn, cfg *ssh.ServerConfig) {
	c.SetDeadline(time.Now().Add(30 * time.Second)) // handshake guard
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go serveSSHSession(&wg, ch, chReqs)
	}
}

// serveSSHSession answers the first exec request of a session channel.
func serveSSHSession(wg *sync.WaitGroup, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer wg.Done()
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			req.Reply(false, nil)
			continue
		}
		req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		status := runSSHCommand(ch, p.Command)
		var st [4]byte
		binary.BigEndian.PutUint32(st[:], status)
		ch.SendRequest("exit-status", false, st[:])
		return
	}
}

// runSSHCommand runs cmd on the channel and returns its exit status.
func runSSHCommand(ch ssh.Channel, cmd string) uint32 {
	f := strings.Fields(cmd)
	switch {
	case len(f) == 1 && f[0] == "cat":
		if _, err := io.Copy(ch, ch); err != nil {
			fmt.Fprintf(ch.Stderr(), "cat: %v\n", err)
			return 1
		}
		return 0
	case len(f) == 1 && f[0] == "sink":
		d, err := digestOf(ch)
		if err != nil {
			fmt.Fprintf(ch.Stderr(), "sink: %v\n", err)
			return 1
		}
		fmt.Fprintf(ch, "%s %d\n", d.Sum, d.N)
		return 0
	case len(f) == 2 && f[0] == "gen":
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			fmt.Fprintf(ch.Stderr(), "gen: bad count %q\n", f[1])
			return 2
		}
		if _, err := io.Copy(ch, payload(genSeed, n)); err != nil {
			fmt.Fprintf(ch.Stderr(), "gen: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(ch.Stderr(), "unknown command %q\n", cmd)
		return 127
	}
}

// sshDial connects an SSH client to addr (the server itself or portmux) and checks
// the server's host key. The connection is closed when the test ends.
func sshDial(t testing.TB, addr string, hostKey ssh.PublicKey) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            sshUser,
		Auth:            []ssh.AuthMethod{ssh.Password(sshPassword)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sshRun runs cmd with stdin and returns its stdout and stderr. An exit status other
// than zero is an error.
func sshRun(c *ssh.Client, cmd string, stdin io.Reader, stdout io.Writer) (stderr string, err error) {
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("new session: %w", err)
	}
	defer s.Close()
	var eb bytes.Buffer
	s.Stdin = stdin
	s.Stdout = stdout
	s.Stderr = &eb
	if err := s.Run(cmd); err != nil {
		return eb.String(), fmt.Errorf("run %q: %w (stderr %q)", cmd, err, eb.String())
	}
	return eb.String(), nil
}

// sshSink sends n bytes of payload(seed) to "sink" and checks the server's digest.
func sshSink(c *ssh.Client, seed uint64, n int64) error {
	var out bytes.Buffer
	if _, err := sshRun(c, "sink", payload(seed, n), &out); err != nil {
		return err
	}
	want, err := digestOf(payload(seed, n))
	if err != nil {
		return err
	}
	if got, w := strings.TrimSpace(out.String()), fmt.Sprintf("%s %d", want.Sum, want.N); got != w {
		return fmt.Errorf("sink replied %q; want %q", got, w)
	}
	return nil
}

// sshGen asks "gen n" and checks the received bytes.
func sshGen(c *ssh.Client, n int64) error {
	pr, pw := io.Pipe()
	type res struct {
		d   digest
		err error
	}
	got := make(chan res, 1)
	go func() {
		d, err := digestOf(pr)
		pr.CloseWithError(err)
		got <- res{d, err}
	}()
	_, err := sshRun(c, fmt.Sprintf("gen %d", n), nil, pw)
	pw.CloseWithError(err)
	r := <-got
	if err != nil {
		return err
	}
	if r.err != nil {
		return r.err
	}
	want, err := digestOf(payload(genSeed, n))
	if err != nil {
		return err
	}
	if r.d != want {
		return fmt.Errorf("gen %d: got %+v; want %+v", n, r.d, want)
	}
	return nil
}
