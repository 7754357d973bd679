package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/providers/file"
)

// noEnv is an empty environment, so that tests do not depend on the
// variables of whoever runs them.
func noEnv() []string { return nil }

// parse is Parse without the process environment.
func parse(doc string) (*Config, error) {
	return load(bytesProvider(doc), "", noEnv)
}

// problemsOf returns the problems of err, which must be an *Error.
func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got error %v (%T); want *Error", err, err)
	}
	return cerr.Problems
}

// minimal is the smallest valid document.
const minimal = `
routes:
  - name: echo
    match: {protocol: any}
    to: builtin:echo
`

func dur(d time.Duration) *time.Duration { return &d }

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse(minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:        []string{":8443"},
		SniffTimeout:  time.Second,
		SniffMaxBytes: 65536,
		DialTimeout:   5 * time.Second,
		IdleTimeout:   time.Hour,
		ShutdownGrace: 30 * time.Second,
		Log:           Log{Level: "info", Format: "json"},
		Routes: []Route{{
			Name:  "echo",
			Match: Match{Protocol: ProtocolAny},
			To:    BuiltinEcho,
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v; want %+v", c, want)
	}
}

func TestFullFile(t *testing.T) {
	t.Parallel()
	const path = "testdata/full.yaml"
	c, err := load(file.Provider(path), path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:        []string{":443", "[::1]:8443", "localhost:9443"},
		SniffTimeout:  2 * time.Second,
		SniffMaxBytes: 4096,
		DialTimeout:   3 * time.Second,
		IdleTimeout:   0,
		ShutdownGrace: 10 * time.Second,
		Log:           Log{Level: "debug", Format: "console"},
		Routes: []Route{
			{
				Name: "web-tls",
				Match: Match{
					Protocol: ProtocolTLS,
					SNI:      []string{"example.com", "*.example.com"},
					ALPN:     []string{"h2", "http/1.1"},
					Source:   []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"},
				},
				To:          "127.0.0.1:8443",
				TLS:         TLSPassthrough,
				DialTimeout: dur(time.Second),
				IdleTimeout: dur(5 * time.Minute),
			},
			{
				Name:  "web",
				Match: Match{Protocol: ProtocolHTTP, Host: []string{"www.example.com", "*.example.org"}},
				To:    "[::1]:8080",
			},
			{Name: "ssh", Match: Match{Protocol: ProtocolSSH}, To: "backend.internal:22", IdleTimeout: dur(0)},
			{Name: "ftp", Match: Match{Protocol: ProtocolFTP}, To: "10.1.2.3:21"},
			{Name: "demo", Match: Match{Protocol: ProtocolUnknown}, To: BuiltinDemo},
			{Name: "echo_1.x", Match: Match{Protocol: ProtocolAny}, To: BuiltinEcho},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a loaded config: %v", err)
	}
}

// TestShapes covers inputs that are accepted in more than one form.
func TestShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		doc   string
		check func(*Config) (got, want string)
	}{
		{
			name: "single string listen",
			doc:  "listen: \":443\"\n" + minimal,
			check: func(c *Config) (string, string) {
				return fmt.Sprint(c.Listen), "[:443]"
			},
		},
		{
			name: "null keeps defaults",
			doc:  "log:\nidle_timeout:\nsniff_timeout: ~\n" + minimal,
			check: func(c *Config) (string, string) {
				return fmt.Sprint(c.Log, c.IdleTimeout, c.SniffTimeout), "{info json} 1h0m0s 1s"
			},
		},
		{
			name: "partial section keeps other defaults",
			doc:  "log: {level: warn}\n" + minimal,
			check: func(c *Config) (string, string) {
				return fmt.Sprint(c.Log), "{warn json}"
			},
		},
		{
			name: "null route override inherits",
			doc:  minimal + "    dial_timeout:\n",
			check: func(c *Config) (string, string) {
				return fmt.Sprint(c.Routes[0].DialTimeout == nil), "true"
			},
		},
		{
			name: "compound duration",
			doc:  "shutdown_grace: 1m30s\n" + minimal,
			check: func(c *Config) (string, string) {
				return c.ShutdownGrace.String(), "1m30s"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parse(tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tt.check(c); got != want {
				t.Errorf("got %q; want %q", got, want)
			}
		})
	}
}

func TestValidateUnloaded(t *testing.T) {
	t.Parallel()
	var c Config
	err := c.Validate()
	got := strings.Join(problemsOf(t, err), "\n")
	for _, want := range []string{
		"config: listen: at least one address required",
		"config: sniff_timeout: must be greater than 0, got 0s",
		"config: routes: at least one route required",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q; want it to contain %q", got, want)
		}
	}
}

func TestParseSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, err string
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "192.0.2.7", want: "192.0.2.7/32"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "2001:db8::1", want: "2001:db8::1/128"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "::ffff:192.0.2.7", want: "192.0.2.7/32"},
		{in: "::ffff:10.1.0.0/104", want: "10.0.0.0/8"},
		{in: "::ffff:0:0/96", want: "0.0.0.0/0"},
		{in: "", err: `invalid source "": want a CIDR such as "10.0.0.0/8" or an IP address`},
		{in: "10.0.0.0/33", err: `invalid source "10.0.0.0/33": prefix length out of range (want 0-32)`},
		{in: "10.0.0.0/", err: `invalid source "10.0.0.0/": prefix length is not a number`},
		{in: "10.0.0.0/+8", err: `invalid source "10.0.0.0/+8": prefix length is not a number`},
		{in: "10.0.0/8", err: `invalid source "10.0.0/8": want a CIDR such as "10.0.0.0/8" or an IP address`},
		{in: "example.com", err: `invalid source "example.com": want a CIDR such as "10.0.0.0/8" or an IP address`},
		{in: "fe80::1%eth0", err: `invalid source "fe80::1%eth0": IPv6 zones are not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			p, err := ParseSource(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Errorf("got %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.String(); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
			if p != p.Masked() || !p.IsValid() {
				t.Errorf("got %v; want a valid masked prefix", p)
			}
		})
	}
}
