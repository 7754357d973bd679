package test

import (
	"strings"
	"testing"
)

// TestE2ECLIHelp: however a newcomer asks for help, portmux prints every
// command on stdout and exits 0 (not run's flags alone).
func TestE2ECLIHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help", "-help"} {
		code, stdout, stderr := opsRunCLI(t, arg)
		for _, want := range []string{"portmux validate -c FILE", "portmux trust", "portmux health"} {
			if code != 0 || !strings.Contains(stdout, want) {
				t.Errorf("portmux %s: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout", arg, code, stdout, stderr, want)
				break
			}
		}
	}
}
