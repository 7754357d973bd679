package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
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

func ptr[T any](v T) *T { return &v }

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse(minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:           []string{":8443"},
		SniffTimeout:     time.Second,
		SniffMaxBytes:    65536,
		HandshakeTimeout: 10 * time.Second,
		DialTimeout:      5 * time.Second,
		IdleTimeout:      time.Hour,
		ShutdownGrace:    30 * time.Second,
		Log:              Log{Level: "info", Format: "json"},
		Admin:            Admin{Listen: "127.0.0.1:9090"},
		TLS:              TLS{CA: "internal"},
		HTTP: HTTP{
			MaxHeaderBytes:        64 << 10,
			ReadHeaderTimeout:     10 * time.Second,
			IdleTimeout:           time.Minute,
			SendTimeout:           time.Minute,
			ResponseHeaderTimeout: time.Minute,
		},
		Limits: Limits{MaxSniffs: DefaultMaxSniffs},
		Routes: []Route{{
			Name:  "echo",
			Match: Match{Protocol: ProtocolAny},
			To:    BuiltinEcho,
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v; want %+v", c, want)
	}
	r := c.Routes[0]
	if r.IsHTTP() || r.Terminates() || !r.PreservesHost() || c.TLS.OnDemand.Enabled() || c.TLS.ACME() {
		t.Errorf("got IsHTTP %v, Terminates %v, PreservesHost %v, OnDemand.Enabled %v, ACME %v; want false, false, true, false, false",
			r.IsHTTP(), r.Terminates(), r.PreservesHost(), c.TLS.OnDemand.Enabled(), c.TLS.ACME())
	}
	if got, want := r.PassiveHealth(), (PassiveHealth{MaxFails: 3, Cooldown: 10 * time.Second}); got != want {
		t.Errorf("got %+v; want %+v", got, want)
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
			name: "single string upstreams",
			doc:  "routes: [{name: r, match: {protocol: http}, upstreams: 'http://a:1'}]\n",
			check: func(c *Config) (string, string) {
				return fmt.Sprint(c.Routes[0].Upstreams, c.Routes[0].IsHTTP()), "[http://a:1] true"
			},
		},
		{
			name: "null optional sections stay off",
			doc: "tls:\n  on_demand:\nroutes: [{name: r, match: {protocol: http}, to: 'http://a'," +
				" health_check: null, passive_health: ~}]\n",
			check: func(c *Config) (string, string) {
				r := c.Routes[0]
				return fmt.Sprint(c.TLS.OnDemand.Enabled(), r.HealthCheck == nil, r.Passive == nil), "false true true"
			},
		},
		{
			name: "empty string disables admin",
			doc:  "admin: {listen: ''}\n" + minimal,
			check: func(c *Config) (string, string) {
				return fmt.Sprintf("%q", c.Admin.Listen), `""`
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

// sprintf is fmt.Sprintf, for tables that hold formats.
func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
