package test

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portmux/portmux/config"
)

// opsCompose is the part of a compose file the wiring checks read.
type opsCompose struct {
	Services map[string]opsService `yaml:"services"`
	Volumes  map[string]any        `yaml:"volumes"`
}

type opsService struct {
	Image string `yaml:"image"`
	Build struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Ports           []string `yaml:"ports"`
	Expose          []string `yaml:"expose"`
	Volumes         []string `yaml:"volumes"`
	DependsOn       []string `yaml:"depends_on"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
}

// TestE2EOpsComposeWiring reads deploy/docker-compose.yml (portmux in front of an
// SSH, a web and an FTP service) and the portmux config it mounts, which must
// validate, and checks that they fit together: the image is built from this
// repository, the config is mounted where the image reads it and /data is a
// named volume, portmux publishes its listen port (as 443), every route's
// target is a service it depends on, at a port that service exposes, the stop
// grace period outlasts shutdown_grace, and the image's HEALTHCHECK asks the
// admin listener the config enables. It can run without Docker.
func TestE2EOpsComposeWiring(t *testing.T) {
	const deploy = "../deploy"
	raw, err := os.ReadFile(filepath.Join(deploy, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf opsCompose
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	pmx, ok := cf.Services["portmux"]
	if !ok {
		t.Fatalf("docker-compose.yml: no portmux service among %v", opsKeys(cf.Services))
	}
	for name, s := range cf.Services {
		if s.Image == "" && s.Build.Context == "" {
			t.Errorf("service %s: neither image nor build", name)
		}
	}
	dockerfile, err := os.ReadFile(filepath.Join(deploy, pmx.Build.Context, pmx.Build.Dockerfile))
	if err != nil {
		t.Fatalf("portmux build (context %q, dockerfile %q): %v", pmx.Build.Context, pmx.Build.Dockerfile, err)
	}

	// The config: mounted where the image's CMD reads it, and valid.
	const inImage = "/etc/portmux/portmux.yaml"
	if !strings.Contains(string(dockerfile), `"-c", "`+inImage+`"`) {
		t.Fatalf("Dockerfile does not run portmux with -c %s; the checks below assume it", inImage)
	}
	var cfgFile string
	var dataVolume bool
	for _, v := range pmx.Volumes {
		f := strings.Split(v, ":")
		switch {
		case len(f) >= 2 && f[1] == inImage:
			cfgFile = filepath.Join(deploy, f[0])
		case len(f) >= 2 && f[1] == "/data":
			_, dataVolume = cf.Volumes[f[0]]
		}
	}
	if cfgFile == "" {
		t.Fatalf("portmux service mounts nothing at %s (volumes %q)", inImage, pmx.Volumes)
	}
	if !dataVolume {
		t.Errorf("portmux service: /data is not a named volume declared under volumes (volumes %q)", pmx.Volumes)
	}
	if !strings.Contains(string(dockerfile), `VOLUME ["/data"]`) {
		t.Errorf("Dockerfile declares no VOLUME /data")
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatalf("%s does not validate:\n%v", cfgFile, err)
	}

	// Published ports: each reaches a listen port; the listen port is published as 443.
	listenPorts := map[string]bool{}
	for _, l := range cfg.Listen {
		_, port, err := net.SplitHostPort(l)
		if err != nil {
			t.Fatalf("listen %q: %v", l, err)
		}
		listenPorts[port] = true
	}
	published := map[string]string{} // host port -> container port
	for _, p := range pmx.Ports {
		f := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		if len(f) < 2 {
			t.Errorf("portmux port %q: want HOST:CONTAINER", p)
			continue
		}
		host, ctr := f[len(f)-2], f[len(f)-1]
		published[host] = ctr
		if !listenPorts[ctr] {
			t.Errorf("portmux publishes container port %s (%q), on which portmux does not listen (listen %q)", ctr, p, cfg.Listen)
		}
	}
	if ctr := published["443"]; !listenPorts[ctr] {
		t.Errorf("host port 443 is not published to a listen port of portmux (ports %q, listen %q)", pmx.Ports, cfg.Listen)
	}

	// Every target is a service portmux depends on, at a port it exposes.
	for _, r := range cfg.Routes {
		targets := append([]string{r.To}, r.Upstreams...)
		for _, to := range targets {
			if to == "" || strings.HasPrefix(to, "builtin:") {
				continue
			}
			host, port := opsTargetHostPort(t, to)
			svc, ok := cf.Services[host]
			if !ok || host == "portmux" {
				t.Errorf("route %s: target %q: host %q is not a service of the compose file (services %v)", r.Name, to, host, opsKeys(cf.Services))
				continue
			}
			if !slices.Contains(pmx.DependsOn, host) {
				t.Errorf("route %s: portmux does not depend on service %s (depends_on %q)", r.Name, host, pmx.DependsOn)
			}
			if !opsExposes(svc, port) {
				t.Errorf("route %s: service %s does not expose port %s (expose %q)", r.Name, host, port, svc.Expose)
			}
		}
		if r.Match.Protocol == config.ProtocolFTP && (r.FTP == nil || r.FTP.PublicAddress == "") {
			t.Errorf("route %s: an FTP route in a container needs ftp.public_address (passive replies would name the container's address)", r.Name)
		}
	}
	var names []string
	for _, r := range cfg.Routes {
		names = append(names, r.Match.Protocol)
	}
	for _, want := range []string{config.ProtocolSSH, config.ProtocolHTTP, config.ProtocolFTP} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s route in %s (protocols %q)", want, cfgFile, names)
		}
	}

	// docker stop must not SIGKILL portmux while it drains.
	grace, err := time.ParseDuration(pmx.StopGracePeriod)
	if err != nil || grace <= cfg.ShutdownGrace {
		t.Errorf("portmux stop_grace_period %q; want a duration above shutdown_grace (%v), or docker stop kills the drain", pmx.StopGracePeriod, cfg.ShutdownGrace)
	}

	// The image's HEALTHCHECK, if any, asks the admin listener this config enables.
	if m := regexp.MustCompile(`HEALTHCHECK.*"-addr",\s*"([^"]+)"`).FindSubmatch(dockerfile); m != nil {
		if got := string(m[1]); got != opsDialable(cfg.Admin.Listen) {
			t.Errorf("Dockerfile HEALTHCHECK asks %s; the compose config's admin.listen is %q", got, cfg.Admin.Listen)
		}
	}

	// The image's own default config validates too.
	if _, err := config.Load(filepath.Join(deploy, "docker.yaml")); err != nil {
		t.Errorf("deploy/docker.yaml (the image's default config) does not validate:\n%v", err)
	}
}

// opsTargetHostPort splits a route target (host:port or URL) into host and port.
func opsTargetHostPort(t *testing.T, to string) (string, string) {
	t.Helper()
	if strings.Contains(to, "://") {
		u, err := url.Parse(to)
		if err != nil {
			t.Fatalf("target %q: %v", to, err)
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		return u.Hostname(), port
	}
	host, port, err := net.SplitHostPort(to)
	if err != nil {
		t.Fatalf("target %q: %v", to, err)
	}
	return host, port
}

// opsExposes reports whether s exposes port (expose entries are ports or
// ranges "a-b").
func opsExposes(s opsService, port string) bool {
	p, _ := strconv.Atoi(port)
	for _, e := range s.Expose {
		lo, hi, _ := strings.Cut(strings.TrimSuffix(e, "/tcp"), "-")
		if hi == "" {
			hi = lo
		}
		a, _ := strconv.Atoi(lo)
		b, _ := strconv.Atoi(hi)
		if a <= p && p <= b {
			return true
		}
	}
	return false
}

// opsDialable is the address a client on the same host dials for a listen
// address (an empty host means all interfaces: loopback works).
func opsDialable(addr string) string {
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

func opsKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
