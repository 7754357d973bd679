package main

import (
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 1600},         // before the first collection: the cap
		{1 * mib, 1600},   // the minimum heap goal (4 MiB x 16) is the headroom
		{4 * mib, 1600},   // 4 MiB + 64 MiB
		{16 * mib, 400},   // 16 MiB + 64 MiB
		{32 * mib, 200},   // 32 MiB + 64 MiB
		{64 * mib, 100},   // GOGC=100 from here on
		{1024 * mib, 100}, // never below GOGC=100
	} {
		if got := gcPercentFor(c.live, 64*mib); got != c.want {
			t.Errorf("gcPercentFor(%d MiB, 64 MiB) = %d; want %d", c.live/mib, got, c.want)
		}
	}
}

// TestPaceGC runs the pacer in this process: it raises GOGC for the test's
// small heap, and puts GOGC=100 back when stopped.
func TestPaceGC(t *testing.T) {
	if p := gogc(); p != 100 {
		t.Skipf("GOGC is %d here, not 100 (set in the environment?)", p)
	}
	defer debug.SetGCPercent(100)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		paceGC(64<<20, 10*time.Millisecond, done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() == 100 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The test's live heap is far under 64 MiB.
	if p := gogc(); p <= 100 {
		t.Errorf("GOGC with the pacer running = %d; want > 100", p)
	}
	close(done)
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("paceGC did not return after done was closed")
	}
	if p := gogc(); p != 100 {
		t.Errorf("GOGC after the pacer stopped = %d; want 100", p)
	}
}

func gogc() int {
	s := []runtimemetrics.Sample{{Name: "/gc/gogc:percent"}}
	runtimemetrics.Read(s)
	return int(s[0].Value.Uint64())
}
