// Command portmux is an edge port multiplexer: one listening port carries
// TLS, HTTP, SSH, FTP and more, each routed to its own backend.
//
// Usage:
//
//	portmux [run] [-c FILE]   serve (without -c: the built-in demo config)
//	portmux validate -c FILE  check a config file, list every problem
//	portmux trust [-c FILE]   print the internal CA's root certificate
//	portmux health [-addr A]  check the admin listener (Docker HEALTHCHECK)
//	portmux version           print the version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/portmux/portmux/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(runCLI(os.Args[1:], os.Stdout, os.Stderr))
}

// runCLI dispatches a subcommand and returns the exit code.
func runCLI(args []string, stdout, stderr io.Writer) int {
	cmd := "run" // flags alone are run's
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help":
			cmd, args = "help", args[1:]
		case a == "-version" || a == "--version":
			cmd, args = "version", args[1:]
		case a != "" && a[0] != '-':
			cmd, args = a, args[1:]
		}
	}
	switch cmd {
	case "run":
		return cmdRun(args, stderr)
	case "validate":
		return cmdValidate(args, stdout, stderr)
	case "trust":
		return cmdTrust(args, stdout, stderr)
	case "health":
		return cmdHealth(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "portmux %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "portmux: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

const usage = `Usage:
  portmux [run] [-c FILE]    serve; without -c (and without $PORTMUX_CONFIG) the built-in demo config
  portmux validate -c FILE   check a config file and list every problem
  portmux trust [-c FILE]    print the internal CA's root certificate (PEM)
  portmux health [-addr A]   exit 0 if the admin listener's /healthz answers
  portmux version            print the version
`

// parseFlags parses a command's flags. When the command should not go on
// it returns false and the exit code: 0 after -h (the flag package has
// printed the command's usage), 2 after a bad flag or an argument that is
// no flag. The flag package stops at the first such argument and leaves
// the flags after it unread: "portmux run stray -c FILE" would serve the
// demo config, "portmux -c FILE validate" would serve FILE.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	case err != nil:
		return 2, false
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "portmux %s: unexpected argument %q", fs.Name(), fs.Arg(0))
		if isCommand(fs.Arg(0)) {
			fmt.Fprintf(fs.Output(), " (the command comes first: portmux %s [flags])", fs.Arg(0))
		}
		fmt.Fprintln(fs.Output())
		fs.Usage()
		return 2, false
	}
	return 0, true
}

// isCommand reports whether name is one of portmux's commands.
func isCommand(name string) bool {
	switch name {
	case "run", "validate", "trust", "health", "version", "help":
		return true
	}
	return false
}

// configFlag registers -c; its default is $PORTMUX_CONFIG.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("c", os.Getenv("PORTMUX_CONFIG"), "config file (YAML); env PORTMUX_CONFIG")
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", stderr)
	path := configFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "portmux validate: -c FILE is required")
		return 2
	}
	if _, err := loadConfig(*path); err != nil {
		fmt.Fprintln(stderr, err)
		var cerr *config.Error
		if errors.As(err, &cerr) {
			fmt.Fprintf(stderr, "%d problem(s) in %s\n", len(cerr.Problems), *path)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}
