package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Phases of the soak, in order.
const (
	phaseWarmup = iota
	phaseBaseline
	phaseAttack
	phaseRecover
	numPhases
)

var phaseNames = [numPhases]string{"warmup", "baseline", "attack", "recover"}

var protocols = []string{"ssh", "tls", "http", "ftp"}

// recorder collects the good clients' results per phase and protocol.
type recorder struct {
	cur  atomic.Int32
	mu   sync.Mutex
	cell map[cellKey]*cell
	errs []string // the first few failures, for the report
	nErr int
}

type cellKey struct {
	phase int
	proto string
}

type cell struct {
	ok, failed int
	bytesOK    int64
	bytesLost  int64
	lat        []time.Duration // of successful exchanges
}

func newRecorder() *recorder { return &recorder{cell: map[cellKey]*cell{}} }

func (r *recorder) setPhase(p int) { r.cur.Store(int32(p)) }
func (r *recorder) phase() int     { return int(r.cur.Load()) }

// add records one exchange of n payload bytes: verified when err is nil,
// otherwise all n bytes count as lost.
func (r *recorder) add(phase int, proto string, d time.Duration, n int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := cellKey{phase, proto}
	c := r.cell[k]
	if c == nil {
		c = &cell{}
		r.cell[k] = c
	}
	if err == nil {
		c.ok++
		c.bytesOK += int64(n)
		c.lat = append(c.lat, d)
		return
	}
	c.failed++
	c.bytesLost += int64(n)
	r.nErr++
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf("%s %s: %v", phaseNames[phase], proto, err))
	}
}

// summary is the merged view of some phases and protocols.
type summary struct {
	ok, failed         int
	bytesOK, bytesLost int64
	p50, p99           time.Duration
}

func (r *recorder) summarize(phase int, protos ...string) summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s summary
	var lat []time.Duration
	for _, p := range protos {
		c := r.cell[cellKey{phase, p}]
		if c == nil {
			continue
		}
		s.ok += c.ok
		s.failed += c.failed
		s.bytesOK += c.bytesOK
		s.bytesLost += c.bytesLost
		lat = append(lat, c.lat...)
	}
	slices.Sort(lat)
	s.p50, s.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return s
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// sample is portmux's resource use at one moment.
type sample struct {
	at         time.Time
	rss        int64 // bytes, from /proc/PID/status VmRSS
	goroutines int64 // go_goroutines
	fds        int64 // process_open_fds
	heapInuse  int64 // go_memstats_heap_inuse_bytes
	active     int64 // sum of portmux_connections_active
}

func (s sample) String() string {
	return fmt.Sprintf("rss=%.1fMiB goroutines=%d fds=%d heap_inuse=%.1fMiB active_conns=%d",
		mib(s.rss), s.goroutines, s.fds, mib(s.heapInuse), s.active)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// probe reads portmux's resource use: RSS from /proc, the rest from the
// admin listener's /metrics.
type probe struct {
	pid     int
	metrics string // http://admin/metrics
	client  *http.Client
}

func (p *probe) take() (sample, error) {
	s := sample{at: time.Now()}
	rss, err := procRSS(p.pid)
	if err != nil {
		return s, err
	}
	s.rss = rss
	resp, err := p.client.Get(p.metrics)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return s, err
	}
	s.goroutines = int64(m["go_goroutines"])
	s.fds = int64(m["process_open_fds"])
	s.heapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	s.active = int64(m["portmux_connections_active"])
	return s, nil
}

// procRSS returns the resident set size of pid.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// parseMetrics sums the Prometheus text exposition by metric name (labels
// dropped), which is all the probe needs.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}
