package main

import (
	"errors"
	"math"
	"os"
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
)

// How the Go runtime paces its memory: a soft memory limit below the
// container's, set at start, and headroom for the collector, kept for the
// live heap while portmux runs.
//
// Go's collector, paced by GOGC=100, runs whenever the heap has doubled
// since the last collection. A proxy's live heap is small (connection
// state and pooled buffers: a few MiB) while every request allocates, so
// under HTTP/2 load it collected ten times a second, about a tenth of the
// CPU per request (docs/performance.md). With gcHeadroom the heap
// may grow by that much above the live heap before a collection: fewer
// collections for at most that much more memory. A live heap larger than
// gcHeadroom is paced as by GOGC=100.
//
// Headroom must not become an out-of-memory kill in a container: the soft
// memory limit (the same as GOMEMLIMIT) makes the collector run harder
// near 90% of the cgroup's limit, whatever GOGC says.
const (
	gcHeadroom     = 64 << 20
	memLimitRatio  = 0.9
	gcPaceInterval = time.Second
	// gcMinHeap is the runtime's minimum heap goal at GOGC=100; it scales
	// with GOGC, so the percent is capped where it reaches gcHeadroom.
	gcMinHeap = 4 << 20
)

// tuneMemory sets the soft memory limit from the cgroup's (unless
// GOMEMLIMIT or AUTOMEMLIMIT=off is set) and, unless GOGC is set, starts
// pacing the collector for gcHeadroom until stop is called. It logs one
// line with the outcome.
func tuneMemory(logger *zap.Logger) (stop func()) {
	fields := []zap.Field{applyMemoryLimit(logger)}
	stop = func() {}
	if v := os.Getenv("GOGC"); v != "" {
		fields = append(fields, zap.String("gc", "GOGC="+v))
	} else {
		done := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			paceGC(gcHeadroom, gcPaceInterval, done)
		}()
		stop = func() { close(done); <-finished }
		fields = append(fields, zap.String("gc", "headroom"), zap.Int64("gc_headroom_bytes", gcHeadroom))
	}
	logger.Info("memory", fields...)
	return stop
}

// applyMemoryLimit applies the cgroup's limit and returns the log field that
// says what the soft limit is and where it came from.
func applyMemoryLimit(logger *zap.Logger) zap.Field {
	// Empty is unset, as for the runtime (memlimit would skip it).
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return zap.String("memory_limit", "GOMEMLIMIT="+v)
	}
	os.Unsetenv("GOMEMLIMIT")
	if os.Getenv("AUTOMEMLIMIT") == "off" {
		return zap.String("memory_limit", "none (AUTOMEMLIMIT=off)")
	}
	// AUTOMEMLIMIT, when set, is the ratio.
	limit, err := memlimit.Set(memlimit.WithRatio(memLimitRatio), memlimit.WithProvider(memlimit.FromCgroup))
	switch {
	case errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrCgroupsNotSupported):
		return zap.String("memory_limit", "none (not in a cgroup)")
	case err != nil:
		logger.Warn("no soft memory limit set", zap.Error(err))
		return zap.String("memory_limit", "none")
	case limit == math.MaxInt64:
		return zap.String("memory_limit", "none (the cgroup has no limit)")
	}
	return zap.Int64("memory_limit_bytes", limit)
}

// paceGC sets GOGC every interval for the live heap (gcPercentFor) until
// done is closed, then restores GOGC=100.
func paceGC(headroom uint64, interval time.Duration, done <-chan struct{}) {
	sample := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(interval)
	defer t.Stop()
	percent := 0
	for {
		runtimemetrics.Read(sample)
		if p := gcPercentFor(sample[0].Value.Uint64(), headroom); p != percent {
			debug.SetGCPercent(p)
			percent = p
		}
		select {
		case <-done:
			debug.SetGCPercent(100)
			return
		case <-t.C:
		}
	}
}

// gcPercentFor is the GOGC that lets a heap of live bytes grow by headroom
// before the next collection, and never by less than live (GOGC=100).
// It is capped where the runtime's minimum heap goal, which grows with
// GOGC, would exceed headroom (a live heap under 4 MiB, or 0 before the
// first collection).
func gcPercentFor(live, headroom uint64) int {
	percent := headroom * 100 / gcMinHeap
	if live > 0 {
		percent = min(headroom*100/live, percent)
	}
	return int(max(percent, 100))
}
