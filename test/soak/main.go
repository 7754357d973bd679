// Command soak runs portmux under a bounded, loopback-only soak: good
// clients of every protocol (SSH-prefixed TCP echo, L7 HTTP, TLS
// passthrough, FTP through the gateway) with checksummed payloads, first
// alone (baseline), then together with attackers (slowloris, garbage,
// half-open, reset mid-transfer, stalled one-byte clients and readers),
// then alone again while portmux settles. It reports bytes lost by good
// clients, their latency under attack against the baseline, and portmux's
// RSS, goroutines and open descriptors at baseline, during the attack and
// after it, prints PASS or FAIL for each criterion and exits 1 on failure.
//
// Typical usage (see docs/soak.md; soak.sh builds portmux and this):
//
//	go build -o /tmp/portmux ./cmd/portmux
//	go run ./test/soak -portmux /tmp/portmux -duration 3m
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the soak's knobs; each flag defaults to an environment
// variable, then to the value shown.
type options struct {
	portmux       string
	duration      time.Duration
	settle        time.Duration
	workers       int
	ftpWorkers    int
	attackScale   int
	maxPayload    int
	seed          uint64
	goroutineTol  float64
	rssTol        float64
	latencyFactor float64
	keep          bool
}

func parseOptions() options {
	var o options
	flag.StringVar(&o.portmux, "portmux", env("SOAK_PORTMUX", ""), "portmux binary to run (env SOAK_PORTMUX)")
	flag.DurationVar(&o.duration, "duration", envDuration("SOAK_DURATION", 3*time.Minute),
		"total length of the load phases: 30% baseline, 40% attack, 20% settle (env SOAK_DURATION)")
	flag.DurationVar(&o.settle, "settle", envDuration("SOAK_SETTLE", 0),
		"settle period after the attack, with good clients only (env SOAK_SETTLE; default 20% of -duration)")
	flag.IntVar(&o.workers, "workers", envInt("SOAK_WORKERS", 8), "good SSH/TLS/HTTP client workers (env SOAK_WORKERS)")
	flag.IntVar(&o.ftpWorkers, "ftp-workers", envInt("SOAK_FTP_WORKERS", 2), "good FTP client workers (env SOAK_FTP_WORKERS)")
	flag.IntVar(&o.attackScale, "attack-scale", envInt("SOAK_ATTACK_SCALE", 10),
		"attacker goroutines per kind: 5x this for slowloris, half-open and stalled one-byte, 1x for the others (env SOAK_ATTACK_SCALE)")
	flag.IntVar(&o.maxPayload, "max-payload", envInt("SOAK_MAX_PAYLOAD", 256<<10), "largest good payload in bytes (env SOAK_MAX_PAYLOAD)")
	seed := flag.Uint64("seed", uint64(envInt("SOAK_SEED", 0)), "random seed; 0 picks one (env SOAK_SEED)")
	flag.Float64Var(&o.goroutineTol, "goroutine-margin", 0.10, "goroutines after may exceed baseline by this fraction plus 10")
	flag.Float64Var(&o.rssTol, "rss-margin", 0.25, "RSS after may exceed baseline by this fraction plus 8 MiB")
	flag.Float64Var(&o.latencyFactor, "latency-factor", 5, "attack p99 may be this many times the baseline p99 (plus 250ms)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (config, portmux log)")
	flag.Parse()
	o.seed = *seed
	if o.seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		o.seed = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 | uint64(b[4])<<32
	}
	if o.settle == 0 {
		o.settle = o.duration / 5
	}
	return o
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return d
	}
	return def
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return n
	}
	return def
}

func main() {
	o := parseOptions()
	if o.portmux == "" {
		fmt.Fprintln(os.Stderr, "soak: -portmux (or SOAK_PORTMUX) names the portmux binary; soak.sh builds one")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := soak(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		fmt.Println("RESULT: FAIL")
		os.Exit(1)
	}
	fmt.Println("RESULT: PASS")
}

// soak runs the phases and the report; false if a criterion failed.
func soak(ctx context.Context, o options) (bool, error) {
	dir, err := os.MkdirTemp("", "portmux-soak-")
	if err != nil {
		return false, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	b, err := startBackends()
	if err != nil {
		return false, err
	}
	defer b.Close()
	pm, err := startPortmux(o.portmux, dir, b)
	if err != nil {
		return false, err
	}
	defer func() {
		if pm.running() {
			pm.stop()
		}
	}()
	// Watchdog: every phase is bounded, but if the whole soak overruns its
	// budget by minutes, stop the portmux it started and give up.
	budget := o.duration + o.settle + 3*time.Minute
	watchdog := time.AfterFunc(budget, func() {
		fmt.Fprintf(os.Stderr, "soak: watchdog: still running after %v; stopping portmux (pid %d)\n", budget, pm.pid())
		pm.stop()
		os.Exit(3)
	})
	defer watchdog.Stop()
	ver, _ := exec.Command(o.portmux, "version").Output()
	fmt.Printf("soak: %s (%s), pid %d on %s (admin %s), seed %d, %d CPUs (GOMAXPROCS %d), work dir %s\n",
		strings.TrimSpace(string(ver)), o.portmux, pm.pid(), pm.listen, pm.admin, o.seed, runtime.NumCPU(), runtime.GOMAXPROCS(0), dir)
	baselineDur, attackDur := o.duration*3/10, o.duration*4/10
	fmt.Printf("soak: phases: warmup 3s, baseline %v, attack %v, settle %v; %d+%d good workers, attack scale %d, payloads up to %d bytes\n",
		baselineDur, attackDur, o.settle, o.workers, o.ftpWorkers, o.attackScale, o.maxPayload)

	pool := make([]byte, 4<<20+o.maxPayload)
	rand.Read(pool)
	rec := newRecorder()
	good := &goodClients{target: pm.listen, roots: b.roots, rec: rec, pool: pool, maxSize: o.maxPayload,
		workers: o.workers, ftpers: o.ftpWorkers}
	pr := &probe{pid: pm.pid(), metrics: "http://" + pm.admin + "/metrics", client: &http.Client{Timeout: 5 * time.Second}}
	idle, err := pr.take()
	if err != nil {
		return false, fmt.Errorf("probe: %w", err)
	}
	fmt.Printf("soak: at start (idle):  %v\n", idle)

	// Warmup and baseline: good clients only.
	rec.setPhase(phaseWarmup)
	stopGood := good.run(o.seed)
	sleepCtx(ctx, 3*time.Second)
	rec.setPhase(phaseBaseline)
	sleepCtx(ctx, baselineDur)
	stopGood()
	base := quiesce(ctx, pr)
	fmt.Printf("soak: baseline (rest):  %v\n", base)

	// Attack: good clients and attackers together; sample the peak.
	rec.setPhase(phaseAttack)
	stopGood = good.run(o.seed + 1)
	att := newAttackers(pm.listen, b.roots, o.attackScale)
	stopAttack := att.run(o.seed + 2)
	peak := sampleMax(ctx, pr, attackDur)
	attackEnd := time.Now()
	stopAttack()
	fmt.Printf("soak: during (peak):    %v\n", peak)
	fmt.Printf("soak: attackers stopped %v after the attack ended\n", time.Since(attackEnd).Round(time.Millisecond))

	// Settle: good clients only, then rest.
	rec.setPhase(phaseRecover)
	sleepCtx(ctx, o.settle)
	stopGood()
	after := quiesce(ctx, pr)
	fmt.Printf("soak: after (rest):     %v\n", after)
	if ctx.Err() != nil {
		return false, fmt.Errorf("interrupted")
	}

	report(rec, att)
	printOutcomes(pr)
	crit := &criteria{}
	judge(crit, o, rec, att, base, peak, after)
	running := pm.running()
	crit.check(running, "portmux still running after the soak", "")
	stopErr := pm.stop()
	crit.check(running && stopErr == nil, "portmux exits cleanly on SIGTERM", fmt.Sprint(stopErr))
	panics, warnings, sample := pm.logProblems()
	crit.check(panics == 0, "no panic in portmux's log", fmt.Sprintf("%d panic lines, %d warn/error lines", panics, warnings))
	for _, l := range sample {
		fmt.Println("  log:", l)
	}
	return crit.ok, nil
}

// quiesce waits until portmux relays no connection and its goroutine and
// descriptor counts stop moving (at most 20s), then returns a sample.
func quiesce(ctx context.Context, pr *probe) sample {
	var last sample
	deadline := time.Now().Add(20 * time.Second)
	for stable := 0; time.Now().Before(deadline) && ctx.Err() == nil; {
		sleepCtx(ctx, 500*time.Millisecond)
		s, err := pr.take()
		if err != nil {
			continue
		}
		if s.active == 0 && s.goroutines == last.goroutines && s.fds == last.fds {
			stable++
		} else {
			stable = 0
		}
		last = s
		if stable >= 3 {
			break
		}
	}
	return last
}

// sampleMax samples every second for d and returns the per-field maximum.
func sampleMax(ctx context.Context, pr *probe, d time.Duration) sample {
	var peak sample
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		sleepCtx(ctx, min(time.Second, time.Until(end)))
		s, err := pr.take()
		if err != nil {
			continue
		}
		peak.rss = max(peak.rss, s.rss)
		peak.goroutines = max(peak.goroutines, s.goroutines)
		peak.fds = max(peak.fds, s.fds)
		peak.heapInuse = max(peak.heapInuse, s.heapInuse)
		peak.active = max(peak.active, s.active)
	}
	return peak
}

// report prints the good clients' results per phase and protocol and the
// attackers' counts.
func report(rec *recorder, att *attackers) {
	fmt.Println("\ngood clients (latency of verified exchanges; an FTP exchange is a whole session: login, 2x STOR+RETR+DELE, includes the 1s sniff_timeout):")
	fmt.Printf("  %-9s %-5s %8s %7s %12s %10s %10s %10s\n", "phase", "proto", "verified", "failed", "bytes_ok", "bytes_lost", "p50", "p99")
	for ph := range numPhases {
		for _, p := range append(protocols, "all") {
			ps := []string{p}
			if p == "all" {
				ps = protocols
			}
			s := rec.summarize(ph, ps...)
			if s.ok+s.failed == 0 {
				continue
			}
			fmt.Printf("  %-9s %-5s %8d %7d %12d %10d %10v %10v\n", phaseNames[ph], p, s.ok, s.failed, s.bytesOK, s.bytesLost,
				s.p50.Round(100*time.Microsecond), s.p99.Round(100*time.Microsecond))
		}
	}
	if rec.nErr > 0 {
		fmt.Printf("  %d failed exchanges; the first:\n", rec.nErr)
		for _, e := range rec.errs {
			fmt.Println("   ", e)
		}
	}
	fmt.Println("\nattackers (connections opened; closed: ended by portmux before the attacker gave up):")
	var total int64
	for i := range att.kinds {
		k := &att.kinds[i]
		total += k.conns.Load()
		fmt.Printf("  %-19s workers=%-3d conns=%-6d closed_by_portmux=%-6d dial_errors=%d\n", k.name, k.workers, k.conns.Load(), k.closed.Load(), k.dialErr.Load())
	}
	fmt.Printf("  total %d attacker connections\n\n", total)
}

// criteria prints PASS/FAIL lines and remembers whether all passed.
type criteria struct{ ok bool }

func (c *criteria) check(pass bool, what, detail string) {
	verdict := "PASS"
	if !pass {
		verdict = "FAIL"
	}
	if detail != "" {
		what += ": " + detail
	}
	fmt.Printf("%s  %s\n", verdict, what)
	if !pass && c.ok {
		c.ok = false
	}
}

func judge(c *criteria, o options, rec *recorder, att *attackers, base, peak, after sample) {
	c.ok = true
	var lost int64
	var failed, verified int
	for ph := range numPhases {
		s := rec.summarize(ph, protocols...)
		lost += s.bytesLost
		failed += s.failed
		verified += s.ok
	}
	c.check(lost == 0 && failed == 0, "good clients lost no bytes (every exchange verified by SHA-256)",
		fmt.Sprintf("%d bytes lost in %d failed of %d exchanges", lost, failed, failed+verified))
	var missing []string
	for _, ph := range []int{phaseBaseline, phaseAttack} {
		for _, p := range protocols {
			if rec.summarize(ph, p).ok == 0 {
				missing = append(missing, phaseNames[ph]+"/"+p)
			}
		}
	}
	detail := "missing: none"
	if len(missing) > 0 {
		detail = "missing: " + strings.Join(missing, ", ")
	}
	c.check(len(missing) == 0, "every protocol verified in the baseline and attack phases", detail)
	var attackConns int64
	for i := range att.kinds {
		attackConns += att.kinds[i].conns.Load()
	}
	c.check(attackConns > 0, "the attack ran", fmt.Sprintf("%d attacker connections", attackConns))
	for _, p := range protocols {
		b, a := rec.summarize(phaseBaseline, p), rec.summarize(phaseAttack, p)
		limit := max(time.Duration(float64(b.p99)*o.latencyFactor), b.p99+250*time.Millisecond)
		c.check(a.p99 <= limit, fmt.Sprintf("%s p99 under attack within %.0fx baseline (+250ms)", p, o.latencyFactor),
			fmt.Sprintf("baseline p50 %v p99 %v; attack p50 %v p99 %v; limit %v", b.p50.Round(time.Millisecond), b.p99.Round(time.Millisecond),
				a.p50.Round(time.Millisecond), a.p99.Round(time.Millisecond), limit.Round(time.Millisecond)))
	}
	gLimit := int64(float64(base.goroutines)*(1+o.goroutineTol)) + 10
	c.check(after.goroutines <= gLimit, "goroutines back to baseline after the attack",
		fmt.Sprintf("baseline %d, peak %d, after %d, limit %d", base.goroutines, peak.goroutines, after.goroutines, gLimit))
	rLimit := int64(float64(base.rss)*(1+o.rssTol)) + 8<<20
	c.check(after.rss <= rLimit, "RSS back to baseline after the attack",
		fmt.Sprintf("baseline %.1f MiB, peak %.1f MiB, after %.1f MiB, limit %.1f MiB (heap in use: %.1f / %.1f / %.1f MiB)",
			mib(base.rss), mib(peak.rss), mib(after.rss), mib(rLimit), mib(base.heapInuse), mib(peak.heapInuse), mib(after.heapInuse)))
	c.check(after.fds <= base.fds+5, "open descriptors back to baseline after the attack",
		fmt.Sprintf("baseline %d, peak %d, after %d", base.fds, peak.fds, after.fds))
	c.check(after.active == 0, "no connection left open at rest", fmt.Sprintf("%d active", after.active))
}

// printOutcomes prints portmux's own count of finished and refused
// connections by protocol and outcome (its view of the good clients and
// the attackers).
func printOutcomes(pr *probe) {
	resp, err := pr.client.Get(pr.metrics)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println("portmux's count of connections (portmux_connections_total, _refused_total):")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "portmux_connections_total{") || strings.HasPrefix(line, "portmux_connections_refused_total{") {
			fmt.Println("  " + line)
		}
	}
	fmt.Println()
}
