package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// figure is one row of the report: a metric of a test.
type figure struct {
	test, metric, label string
	higherBetter        bool
	ratio               bool    // shown as a ratio to direct, round by round
	goal                float64 // the target for portmux: a ratio, or an absolute bound; 0 none
	haproxyEarlier      string  // HAProxy's best earlier measurement, as the issue quotes it
	diagnostic          bool    // not a figure of the issue: left out of the comparison
}

var figures = []figure{
	{"bulk_up_1", "mbps", "bulk 1 conn up (MB/s)", true, true, 0.50, "0.39x", false},
	{"bulk_down_1", "mbps", "bulk 1 conn down (MB/s)", true, true, 0.50, "0.44x", false},
	{"bulk_up_8", "mbps", "bulk 8 conns up (MB/s)", true, true, 0.50, "0.41x", false},
	{"bulk_down_8", "mbps", "bulk 8 conns down (MB/s)", true, true, 0.50, "0.30x", false},
	{"connrate", "cps", "new conns/s (SSH prefix + echo, 32 concurrent)", true, true, 0.65, "0.57x", false},
	{"connrate", "slow_over_500ms", "conn/s test: connections slower than 500 ms", false, false, 0, "", true},
	{"latency", "p50_us", "connect-to-first-byte p50 (µs)", false, true, 0, "", false},
	{"latency", "p99_us", "connect-to-first-byte p99 (µs)", false, true, 0, "", false},
	{"ftp_greeting", "p50_ms", "silent client: connect to FTP greeting p50 (ms, the proxy's wait included)", false, false, 0, "", true},
	{"ftp_greeting", "over_p50_ms", "FTP greeting overshoot p50 (ms after the wait)", false, false, 0, "", false},
	{"ftp_greeting", "over_p99_ms", "FTP greeting overshoot p99 (ms after the wait)", false, false, 5, "", false},
	{"idle", "pss_kib", "memory per idle relayed conn, PSS (KiB)", false, false, 6, "3.6 KiB", false},
	{"idle", "rss_kib", "memory per idle relayed conn, RSS (KiB)", false, false, 0, "", false},
	{"idle", "fds", "fds per idle relayed conn", false, false, 2, "2", false},
}

// data maps test/metric -> target -> round -> value.
type data map[string]map[string]map[int]float64

func (d data) get(test, metric, target string) map[int]float64 {
	return d[test+"/"+metric][target]
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	raw := fs.String("raw", "", "raw results: round, test, target, metric, value (tab-separated)")
	targetsFlag := fs.String("targets", "direct portmux haproxy haproxy-splice-auto haproxy-splice sslh-fork", "columns, in order")
	fs.Parse(args)
	f, err := os.Open(*raw)
	if err != nil {
		return err
	}
	defer f.Close()
	d, rounds, err := readRaw(f)
	if err != nil {
		return err
	}
	targets := strings.Fields(*targetsFlag)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	writeMain(w, d, targets)
	writeGoals(w, d, targets)
	writeRounds(w, d, targets, rounds)
	writeCPU(w, d, targets)
	return nil
}

func readRaw(r io.Reader) (data, []int, error) {
	d := data{}
	seen := map[int]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			return nil, nil, fmt.Errorf("bad raw line %q", line)
		}
		round, err1 := strconv.Atoi(f[0])
		v, err2 := strconv.ParseFloat(f[4], 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, nil, fmt.Errorf("bad raw line %q: %w", line, err)
		}
		key := f[1] + "/" + f[3]
		if d[key] == nil {
			d[key] = map[string]map[int]float64{}
		}
		if d[key][f[2]] == nil {
			d[key][f[2]] = map[int]float64{}
		}
		d[key][f[2]][round] = v
		seen[round] = true
	}
	var rounds []int
	for r := range seen {
		rounds = append(rounds, r)
	}
	slices.Sort(rounds)
	return d, rounds, sc.Err()
}

func median(vals []float64) float64 {
	if len(vals) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func values(m map[int]float64) []float64 {
	var out []float64
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// ratios are a target's values divided by direct's of the same round.
func ratios(d data, fg figure, target string) map[int]float64 {
	base := d.get(fg.test, fg.metric, "direct")
	out := map[int]float64{}
	for r, v := range d.get(fg.test, fg.metric, target) {
		if b, ok := base[r]; ok && b > 0 {
			out[r] = v / b
		}
	}
	return out
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func header(w io.Writer, first string, targets []string) {
	fmt.Fprintf(w, "| %s |", first)
	for _, t := range targets {
		fmt.Fprintf(w, " %s |", t)
	}
	fmt.Fprint(w, "\n|---|")
	for range targets {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
}

func writeMain(w io.Writer, d data, targets []string) {
	fmt.Fprintln(w, "### Results (median over rounds; in parentheses: median of the per-round ratios to direct)")
	fmt.Fprintln(w)
	header(w, "figure", targets)
	for _, fg := range figures {
		fmt.Fprintf(w, "| %s |", fg.label)
		for _, t := range targets {
			vals := d.get(fg.test, fg.metric, t)
			cell := num(median(values(vals)))
			if fg.ratio && t != "direct" && len(vals) > 0 {
				cell += fmt.Sprintf(" (%sx)", num(median(values(ratios(d, fg, t)))))
			}
			fmt.Fprintf(w, " %s |", cell)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "MB/s are 10^6 bytes per second of payload. For latency a ratio above 1 is slower than direct.")
	fmt.Fprintln(w, "Memory and fds are (proxy after - before) / connections held, on a fresh proxy process per round.")
	fmt.Fprintln(w, "FTP greeting (issue #7, server-first detection): a client connects and sends nothing; the delay runs from connect() to the first byte of the backend's `220` greeting, and the overshoot is that delay less the time the proxy waits for client bytes before it routes the client as silent (portmux's `sniff_timeout`, HAProxy's `inspect-delay`, sslh's `-t`; 0 for direct, whose overshoot is the bare connect-and-greet time).")
	fmt.Fprintln(w)
}

// better reports whether a beats b for fg.
func better(fg figure, a, b float64) bool {
	if fg.higherBetter {
		return a > b
	}
	return a < b
}

func writeGoals(w io.Writer, d data, targets []string) {
	fmt.Fprintln(w, "### portmux against the issue's targets and against HAProxy measured in the same run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | target | portmux | meets target | best HAProxy here (variant) | portmux ahead | HAProxy earlier (issue) |")
	fmt.Fprintln(w, "|---|---:|---:|:---:|---:|:---:|---:|")
	for _, fg := range figures {
		if fg.diagnostic {
			continue
		}
		score := func(t string) float64 {
			if fg.ratio {
				return median(values(ratios(d, fg, t)))
			}
			return median(values(d.get(fg.test, fg.metric, t)))
		}
		pm := score("portmux")
		best, bestName := math.NaN(), ""
		for _, t := range targets {
			if !strings.HasPrefix(t, "haproxy") {
				continue
			}
			if s := score(t); !math.IsNaN(s) && (math.IsNaN(best) || better(fg, s, best)) {
				best, bestName = s, t
			}
		}
		suffix := ""
		if fg.ratio {
			suffix = "x"
		}
		goal, meets := "—", "—"
		if fg.goal > 0 && !math.IsNaN(pm) {
			if fg.higherBetter {
				goal = fmt.Sprintf(">= %s%s", num(fg.goal), suffix)
				meets = yesNo(pm >= fg.goal)
			} else {
				goal = fmt.Sprintf("<= %s", num(fg.goal))
				meets = yesNo(pm <= fg.goal)
			}
		}
		ahead := "—"
		if !math.IsNaN(pm) && !math.IsNaN(best) {
			ahead = yesNo(better(fg, pm, best) || pm == best)
		}
		bestCell := "—"
		if bestName != "" {
			bestCell = fmt.Sprintf("%s%s (%s)", num(best), suffix, bestName)
		}
		earlier := fg.haproxyEarlier
		if earlier == "" {
			earlier = "—"
		}
		fmt.Fprintf(w, "| %s | %s | %s%s | %s | %s | %s | %s |\n", fg.label, goal, num(pm), suffix, meets, bestCell, ahead, earlier)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Throughput and conn/s compare ratios to direct; latency compares the ratio to direct (lower is better); memory, fds and the FTP greeting overshoot compare absolute values (equal counts as ahead).")
	fmt.Fprintln(w, "The FTP greeting target, \"the greeting arrives within `sniff_timeout` + 5 ms\", is portmux's overshoot p99 <= 5 ms, in absolute terms; HAProxy, with the same wait as its `inspect-delay`, measured in the same run, is the comparison.")
	fmt.Fprintln(w)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func writeRounds(w io.Writer, d data, targets []string, rounds []int) {
	fmt.Fprintln(w, "### Round by round (ratio to direct for throughput, conn/s and latency; absolute values for memory, fds and the FTP greeting), and spread")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each cell lists rounds 1..N, then the spread (max-min)/median.")
	fmt.Fprintln(w)
	header(w, "figure", targets)
	for _, fg := range figures {
		fmt.Fprintf(w, "| %s |", fg.label)
		for _, t := range targets {
			var m map[int]float64
			if fg.ratio && t != "direct" {
				m = ratios(d, fg, t)
			} else {
				m = d.get(fg.test, fg.metric, t)
			}
			if len(m) == 0 {
				fmt.Fprint(w, " — |")
				continue
			}
			var parts []string
			var vals []float64
			for _, r := range rounds {
				if v, ok := m[r]; ok {
					parts = append(parts, num(v))
					vals = append(vals, v)
				} else {
					parts = append(parts, "?")
				}
			}
			spread := ""
			if med := median(vals); len(vals) > 1 && med != 0 {
				spread = fmt.Sprintf(" ±%.0f%%", 100*(slices.Max(vals)-slices.Min(vals))/math.Abs(med))
			}
			fmt.Fprintf(w, " %s%s |", strings.Join(parts, " / "), spread)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func writeCPU(w io.Writer, d data, targets []string) {
	fmt.Fprintln(w, "### Proxy CPU time (median over rounds; user+system of the proxy process and its children)")
	fmt.Fprintln(w)
	header(w, "cost", targets)
	rows := []struct{ test, label, per string }{
		{"bulk_up_1", "bulk 1 conn up: CPU ms per GB", "bytes"},
		{"bulk_down_1", "bulk 1 conn down: CPU ms per GB", "bytes"},
		{"bulk_up_8", "bulk 8 conns up: CPU ms per GB", "bytes"},
		{"bulk_down_8", "bulk 8 conns down: CPU ms per GB", "bytes"},
		{"connrate", "conn/s test: CPU µs per connection", "conns"},
		{"latency", "latency test: CPU µs per connection", "conns"},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |", row.label)
		for _, t := range targets {
			cpu := d.get(row.test, "cpu_ms", t)
			per := d.get(row.test, row.per, t)
			var vals []float64
			for r, c := range cpu {
				if p, ok := per[r]; ok && p > 0 {
					if row.per == "bytes" {
						vals = append(vals, c/(p/1e9))
					} else {
						vals = append(vals, c*1000/p)
					}
				}
			}
			fmt.Fprintf(w, " %s |", num(median(vals)))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Clock-tick resolution (10 ms) per test: small values are approximate. On 2 cores the proxy's CPU time is taken from the load tool's, so it bounds throughput directly.")
	if slices.Contains(targets, "sslh-fork") {
		fmt.Fprintln(w, "sslh-fork: not measured; its per-connection processes are reaped automatically (SA_NOCLDWAIT), so their CPU time is accounted to no live process.")
	}
	fmt.Fprintln(w)
}
