// Command l4load is the load tool of portmux's L4 benchmark (test/bench/l4.sh).
// Standard library only. It is both ends of the traffic:
//
//	l4load serve    -listen ADDR                  TCP backend: echo, bulk download, bulk upload
//	                [-greet-listen ADDR2]         and on ADDR2 a server-first one (220 greeting, FTP-like)
//	l4load bulk     -addr A -dir up|down -conns N -bytes B   throughput (MB/s)
//	l4load connrate -addr A -concurrency 32 -duration 10s -prefix 'SSH-2.0-bench\r\n'
//	l4load latency  -addr A -n 2000              connect-to-first-byte p50/p99
//	l4load greeting -addr A -n 300 -silence 1s   silent client: connect to server greeting p50/p99
//	l4load idle     -addr A -n 2000              hold N idle relayed connections
//	l4load pstat    -pid P                       PSS, RSS, fds, CPU of P and its descendants
//	l4load wait     -addr A                      until A accepts connections
//	l4load freeports -n N                        N free loopback ports
//	l4load memstats -url U                       a Go process's expvar memstats (profiling builds)
//	l4load fetch    -url U -o FILE               save a profile (profiling builds)
//	l4load report   -raw FILE                    markdown tables from the script's raw results
//
// The backend chooses what to do from the first line a client sends, which
// is also a valid SSH identification line, so every proxy routes it as SSH:
//
//	SSH-2.0-bench-down-N\r\n   the backend sends N bytes, then closes
//	SSH-2.0-bench-up-N\r\n     the backend reads N bytes, then replies the count ("N\n")
//	anything else              echo, from the first byte (e.g. "SSH-2.0-bench\r\n")
//
// The -greet-listen backend speaks first, as an FTP server does: it sends
// "220 l4load greeting\r\n" on accept and then only reads. A proxy reaches
// it for a client that sends nothing (portmux's protocol: ftp route).
//
// Neither bulk mode depends on a half-close reaching the other end (sslh
// closes both sides on the first EOF): the byte count is known in advance.
//
// Measurements are printed as one line "RESULT key=value ...", which the
// script parses. Every client loop is bounded in count and in time.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

const usage = `usage: l4load COMMAND [flags]

commands: serve, bulk, connrate, latency, greeting, idle, pstat, wait, freeports, memstats, fetch, report
"l4load COMMAND -h" lists a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	commands := map[string]func([]string) error{
		"serve":     cmdServe,
		"bulk":      cmdBulk,
		"connrate":  cmdConnRate,
		"latency":   cmdLatency,
		"greeting":  cmdGreeting,
		"idle":      cmdIdle,
		"pstat":     cmdPstat,
		"wait":      cmdWait,
		"freeports": cmdFreePorts,
		"memstats":  cmdMemStats,
		"fetch":     cmdFetch,
		"report":    cmdReport,
	}
	run, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(os.Stderr, "l4load: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err := run(args); err != nil {
		fmt.Fprintf(os.Stderr, "l4load %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// unescape reads C-style escapes (\r, \n, \t, \\, \xHH) in a flag value, so
// that -prefix 'SSH-2.0-bench\r\n' means what it says.
func unescape(s string) (string, error) {
	u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`)
	if err != nil {
		return "", fmt.Errorf("bad escape in %q: %w", s, err)
	}
	return u, nil
}

// result prints the machine-readable line of a measurement.
func result(kv ...any) {
	var b strings.Builder
	b.WriteString("RESULT")
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	fmt.Println(b.String())
}
