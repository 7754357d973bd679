package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// clearEnv blanks every PORTMUX_ variable of the test process for the rest of
// the test. Empty values are ignored by the environment layer.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, EnvPrefix) {
			t.Setenv(name, "")
		}
	}
}

func TestEnvOverride(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		doc  string
		got  func(*Config) string
		want string
	}{
		{
			name: "log level",
			env:  map[string]string{"PORTMUX_LOG__LEVEL": "debug"},
			got:  func(c *Config) string { return fmt.Sprint(c.Log) },
			want: "{debug json}",
		},
		{
			name: "sniff timeout over file",
			env:  map[string]string{"PORTMUX_SNIFF_TIMEOUT": "2s"},
			doc:  "sniff_timeout: 5s\n",
			got:  func(c *Config) string { return c.SniffTimeout.String() },
			want: "2s",
		},
		{
			name: "listen list",
			env:  map[string]string{"PORTMUX_LISTEN": ":443, [::1]:8443,localhost:1"},
			doc:  "listen: [':80']\n",
			got:  func(c *Config) string { return strings.Join(c.Listen, " ") },
			want: ":443 [::1]:8443 localhost:1",
		},
		{
			name: "integer",
			env:  map[string]string{"PORTMUX_SNIFF_MAX_BYTES": "2048"},
			got:  func(c *Config) string { return fmt.Sprint(c.SniffMaxBytes) },
			want: "2048",
		},
		{
			name: "config path is not a key",
			env:  map[string]string{"PORTMUX_CONFIG": "/etc/portmux.yaml", "PORTMUX_IDLE_TIMEOUT": "0s"},
			got:  func(c *Config) string { return c.IdleTimeout.String() },
			want: "0s",
		},
		{
			name: "tls ca",
			env:  map[string]string{"PORTMUX_TLS__CA": "letsencrypt-staging"},
			got:  func(c *Config) string { return c.TLS.CA },
			want: "letsencrypt-staging",
		},
		{
			name: "admin listen over file",
			env:  map[string]string{"PORTMUX_ADMIN__LISTEN": "[::1]:9999"},
			doc:  "admin: {listen: ''}\n",
			got:  func(c *Config) string { return c.Admin.Listen },
			want: "[::1]:9999",
		},
		{
			name: "trusted proxies list",
			env:  map[string]string{"PORTMUX_HTTP__TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,2001:db8::/32"},
			got:  func(c *Config) string { return strings.Join(c.HTTP.TrustedProxies, " ") },
			want: "10.0.0.0/8 192.0.2.7 2001:db8::/32",
		},
		{
			name: "boolean",
			env:  map[string]string{"PORTMUX_TLS__AGREE_TERMS": "true"},
			got:  func(c *Config) string { return fmt.Sprint(c.TLS.AgreeTerms) },
			want: "true",
		},
		{
			name: "on demand from the environment gets its section defaults",
			env:  map[string]string{"PORTMUX_TLS__ON_DEMAND__ALLOW": "a.example.com,B.example.com"},
			got:  func(c *Config) string { return fmt.Sprint(c.TLS.OnDemand) },
			want: "{[a.example.com b.example.com]  0 1m0s}",
		},
		{
			name: "empty value is ignored",
			env:  map[string]string{"PORTMUX_LOG__FORMAT": ""},
			doc:  "log: {format: console}\n",
			got:  func(c *Config) string { return c.Log.Format },
			want: "console",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Parse([]byte(tt.doc + minimal))
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(c); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestEnvProblems(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown key", map[string]string{"PORTMUX_SNIF_TIMEOUT": "1s"},
			`config: env PORTMUX_SNIF_TIMEOUT: unknown key "snif_timeout"`},
		{"single underscore nesting", map[string]string{"PORTMUX_LOG_LEVEL": "debug"},
			`config: env PORTMUX_LOG_LEVEL: unknown key "log_level" (use "__" between levels: PORTMUX_LOG__LEVEL)`},
		{"section", map[string]string{"PORTMUX_LOG": "debug"},
			`config: env PORTMUX_LOG: "log" is a section: set one of its keys, such as PORTMUX_LOG__LEVEL`},
		{"routes", map[string]string{"PORTMUX_ROUTES__0__NAME": "web"},
			`config: env PORTMUX_ROUTES__0__NAME: "routes" cannot be set from the environment`},
		{"bare number duration", map[string]string{"PORTMUX_DIAL_TIMEOUT": "5"},
			`config: env PORTMUX_DIAL_TIMEOUT: want a duration such as "1s" or "500ms", got "5"`},
		{"not an integer", map[string]string{"PORTMUX_SNIFF_MAX_BYTES": "64k"},
			`config: env PORTMUX_SNIFF_MAX_BYTES: want an integer, got "64k"`},
		{"not a boolean", map[string]string{"PORTMUX_TLS__AGREE_TERMS": "yes please"},
			`config: env PORTMUX_TLS__AGREE_TERMS: want true or false, got "yes please"`},
		{"nested section", map[string]string{"PORTMUX_TLS__ON_DEMAND": "on"},
			`config: env PORTMUX_TLS__ON_DEMAND: "tls.on_demand" is a section: set one of its keys, such as PORTMUX_TLS__ON_DEMAND__ALLOW`},
		{"top-level section", map[string]string{"PORTMUX_ADMIN": ":1"},
			`config: env PORTMUX_ADMIN: "admin" is a section: set one of its keys, such as PORTMUX_ADMIN__LISTEN`},
		{"single underscore in a nested key", map[string]string{"PORTMUX_TLS_ON_DEMAND__ASK": "http://a"},
			`config: env PORTMUX_TLS_ON_DEMAND__ASK: unknown key "tls_on_demand.ask" (use "__" between levels: PORTMUX_TLS__ON_DEMAND__ASK)`},
		{"below a scalar", map[string]string{"PORTMUX_TLS__CA__URL": "x"},
			`config: env PORTMUX_TLS__CA__URL: unknown key "tls.ca.url"`},
		{"invalid ca names the variable", map[string]string{"PORTMUX_TLS__CA": "letsencrypt-prod"},
			`config: tls.ca: unknown ca "letsencrypt-prod" (want internal, letsencrypt, letsencrypt-staging, zerossl or an https:// ACME directory URL) (set by PORTMUX_TLS__CA)`},
		{"invalid trusted proxy names the variable", map[string]string{"PORTMUX_HTTP__TRUSTED_PROXIES": "10.0.0.0/8,lan"},
			`config: http.trusted_proxies[1]: invalid source "lan": want a CIDR such as "10.0.0.0/8" or an IP address (set by PORTMUX_HTTP__TRUSTED_PROXIES)`},
		{"on demand from the environment needs allow or ask", map[string]string{"PORTMUX_TLS__ON_DEMAND__RATE_LIMIT": "5"},
			`config: tls.on_demand: needs allow or ask (refusing to issue certificates for any name)`},
		{"invalid value names the variable", map[string]string{"PORTMUX_SNIFF_TIMEOUT": "5m"},
			`config: sniff_timeout: must be at most 1m0s, got 5m0s (set by PORTMUX_SNIFF_TIMEOUT)`},
		{"invalid list element names the variable", map[string]string{"PORTMUX_LISTEN": ":443,bad"},
			`config: listen[1]: invalid address "bad": missing port (set by PORTMUX_LISTEN)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := Parse([]byte(minimal))
			got := problemsOf(t, err)
			if !slices.Contains(got, tt.want) {
				t.Errorf("got %q; want %q among the problems", got, tt.want)
			}
		})
	}
}

// TestEnvReportedWithYAMLError checks that environment problems are reported
// even when the document cannot be parsed, sorted by variable name.
func TestEnvReportedWithYAMLError(t *testing.T) {
	t.Parallel()
	environ := func() []string {
		return []string{"PORTMUX_ZZZ=1", "PORTMUX_AAA=1", "PORTMUX_LOG__LEVEL=debug", "OTHER=1"}
	}
	_, err := load(bytesProvider("a: [\n"), "", environ)
	got := problemsOf(t, err)
	want := []string{
		`config: yaml: line 1: did not find expected node content`,
		`config: env PORTMUX_AAA: unknown key "aaa"`,
		`config: env PORTMUX_ZZZ: unknown key "zzz"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestEnvSetTwice(t *testing.T) {
	t.Parallel()
	environ := func() []string {
		return []string{"PORTMUX_SNIFF_TIMEOUT=2s", "PORTMUX_sniff_timeout=3s"}
	}
	_, err := load(bytesProvider(minimal), "", environ)
	got := problemsOf(t, err)
	want := []string{`config: env PORTMUX_sniff_timeout: "sniff_timeout" is already set by PORTMUX_SNIFF_TIMEOUT`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}

// TestEnvKeys pins the keys the environment can set, so that a schema change
// is a deliberate documentation change too.
func TestEnvKeys(t *testing.T) {
	t.Parallel()
	var got []string
	for k, typ := range envKeys() {
		got = append(got, k+":"+typ.String())
	}
	slices.Sort(got)
	want := []string{
		"admin.listen:string",
		"dial_timeout:time.Duration",
		"handshake_timeout:time.Duration",
		"http.idle_timeout:time.Duration",
		"http.max_header_bytes:int",
		"http.read_header_timeout:time.Duration",
		"http.response_header_timeout:time.Duration",
		"http.send_timeout:time.Duration",
		"http.trusted_proxies:[]string",
		"http_listen:string",
		"idle_timeout:time.Duration",
		"limits.max_conns:int",
		"limits.max_conns_per_ip:int",
		"limits.max_sniffs:int",
		"limits.rate_burst:int",
		"limits.rate_per_ip:float64",
		"listen:[]string",
		"log.format:string",
		"log.level:string",
		"proxy_protocol.optional:bool",
		"proxy_protocol.trusted:[]string",
		"shutdown_grace:time.Duration",
		"sniff_max_bytes:int",
		"sniff_timeout:time.Duration",
		"tls.agree_terms:bool",
		"tls.ca:string",
		"tls.default_sni:string",
		"tls.eab.key_id:string",
		"tls.eab.mac_key:string",
		"tls.email:string",
		"tls.on_demand.allow:[]string",
		"tls.on_demand.ask:string",
		"tls.on_demand.rate_limit:int",
		"tls.on_demand.rate_window:time.Duration",
		"tls.storage:string",
		"tls.trusted_roots:string",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}
