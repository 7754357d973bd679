package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/tlsutil"
)

// cmdTrust prints the internal CA's root certificate (PEM), so a user can
// add it to a trust store: portmux trust > root.pem.
func cmdTrust(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("trust", stderr)
	path := configFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.TLS.CA != config.CAInternal {
		fmt.Fprintf(stderr, "portmux trust: tls.ca is %q: only the internal CA has a root to trust\n", cfg.TLS.CA)
		return 1
	}
	dir := storageDir(cfg.TLS.Storage)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pem, err := tlsutil.RootPEMFromStorage(ctx, dir)
	if err != nil {
		fmt.Fprintf(stderr, "portmux trust: no internal CA root in %s yet (portmux creates it when it first serves a terminating route): %v\n", redacted(dir), err)
		return 1
	}
	stdout.Write(pem)
	return 0
}

// cmdHealth checks the admin listener's /healthz and exits 0 if it answers
// 200: a Docker HEALTHCHECK for an image without a shell or curl.
func cmdHealth(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", stderr)
	path := configFlag(fs)
	addr := fs.String("addr", "", "admin address (default: admin.listen of the config)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *addr == "" {
		cfg, err := loadConfig(*path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if cfg.Admin.Listen == "" {
			fmt.Fprintln(stderr, "portmux health: admin.listen is off: nothing to ask")
			return 1
		}
		*addr = cfg.Admin.Listen
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + dialable(*addr) + "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "portmux health: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "portmux health: %s\n", resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// dialable turns a listen address with an empty or unspecified host into
// one a client can dial on this machine.
func dialable(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		return "127.0.0.1" + addr
	}
	if len(addr) > 8 && addr[:8] == "0.0.0.0:" {
		return "127.0.0.1" + addr[7:]
	}
	return addr
}

// redacted removes a password from a storage URL before it is shown.
func redacted(storage string) string {
	u, err := url.Parse(storage)
	if err != nil || u.User == nil {
		return storage
	}
	return u.Redacted()
}
