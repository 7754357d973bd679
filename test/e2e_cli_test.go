package test

import (
	"strings"
	"testing"
)

// TestE2ECLIHelp: however a newcomer asks for help, portmux prints every
// command on stdout and exits 0 (not run's flags alone); a command's -h
// prints its flags and exits 0 too, and a bad flag exits 2.
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
	for _, args := range [][]string{{"run", "-h"}, {"validate", "-h"}, {"trust", "--help"}, {"health", "-h"}} {
		if code, _, stderr := opsRunCLI(t, args...); code != 0 || !strings.Contains(stderr, "-c") && !strings.Contains(stderr, "-addr") {
			t.Errorf("portmux %s: exit %d, stderr %q; want exit 0 and the command's flags", strings.Join(args, " "), code, stderr)
		}
	}
	if code, _, stderr := opsRunCLI(t, "run", "-no-such-flag"); code != 2 || !strings.Contains(stderr, "no-such-flag") {
		t.Errorf("portmux run -no-such-flag: exit %d, stderr %q; want exit 2 naming the flag", code, stderr)
	}
}
