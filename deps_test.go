package portmux_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// badDeps lists, per package of ours, the packages of ours it must not
// import (directly or not), and why. See ../shared/DESIGN.md.
var badDeps = map[string]map[string]string{
	"config":            {"mux": "config is a leaf", "proxy": "config is a leaf", "tlsutil": "config is a leaf", "cmd/portmux": "nothing imports cmd"},
	"mux":               {"proxy": "siblings: cmd wires them", "tlsutil": "siblings", "config": "mux takes options, not config"},
	"proxy":             {"mux": "siblings: cmd wires them", "tlsutil": "siblings", "config": "proxy takes options, not config"},
	"tlsutil":           {"mux": "siblings", "proxy": "siblings", "config": "tlsutil takes options, not config"},
	"internal/rawio":    {"mux": "rawio is a leaf", "proxy": "rawio is a leaf", "tlsutil": "rawio is a leaf", "config": "rawio is a leaf"},
	"internal/loopback": {"mux": "loopback is a leaf", "proxy": "loopback is a leaf", "tlsutil": "loopback is a leaf", "config": "loopback is a leaf"},
	"internal/httpline": {"mux": "httpline is a leaf", "proxy": "httpline is a leaf", "tlsutil": "httpline is a leaf", "config": "httpline is a leaf"},
}

func TestDependencyGraph(t *testing.T) {
	const module = "github.com/portmux/portmux/"
	for pkg, bad := range badDeps {
		out, err := exec.Command("go", "list", "-json=Deps", "./"+pkg).Output()
		if err != nil {
			if strings.Contains(string(out), "no Go files") {
				continue // not written yet
			}
			t.Fatalf("go list %s: %v", pkg, err)
		}
		var info struct{ Deps []string }
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		for _, dep := range info.Deps {
			if why, ok := bad[strings.TrimPrefix(dep, module)]; ok && strings.HasPrefix(dep, module) {
				t.Errorf("%s imports %s: %s", pkg, dep, why)
			}
		}
	}
}
