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

// TestE2ECLIStrayArgument: an argument that is no flag is refused with
// exit 2 and named, instead of ending the flags there (Go's flag package
// leaves the flags after it unread): "run stray -c FILE" must not serve
// the demo config, nor "-c FILE validate" serve FILE. --version prints
// the version.
func TestE2ECLIStrayArgument(t *testing.T) {
	for _, args := range [][]string{
		{"run", "stray", "-c", "/nonexistent.yaml"},
		{"-c", "/nonexistent.yaml", "validate"},
		{"validate", "-c", "/nonexistent.yaml", "extra"},
		{"trust", "extra"},
		{"health", "extra"},
	} {
		code, stdout, stderr := opsRunCLI(t, args...)
		stray := args[len(args)-1]
		if args[0] == "run" {
			stray = "stray"
		}
		if code != 2 || !strings.Contains(stderr, "unexpected argument \""+stray+"\"") || stdout != "" {
			t.Errorf("portmux %s: exit %d, stdout %q, stderr %q; want exit 2 naming %q",
				strings.Join(args, " "), code, stdout, stderr, stray)
		}
	}
	if _, _, stderr := opsRunCLI(t, "-c", "/nonexistent.yaml", "validate"); !strings.Contains(stderr, "portmux validate [flags]") {
		t.Errorf("flags before the command: stderr %q; want the hint that the command comes first", stderr)
	}
	if code, stdout, _ := opsRunCLI(t, "--version"); code != 0 || !strings.HasPrefix(stdout, "portmux ") {
		t.Errorf("portmux --version: exit %d, stdout %q; want exit 0 and the version", code, stdout)
	}
}
