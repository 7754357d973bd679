package tlsutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// store is one empty store of a backend under the contract test.
type store struct {
	// open returns a new handle on the store, as another replica would
	// have it.
	open func(t *testing.T) certmagic.Storage
	// crash leaves the lock name held by a holder that died (stopped
	// renewing without unlocking).
	crash func(t *testing.T, name string)
	// hold is how long a lock outlives its expiry while its holder lives
	// and renews it; 0 if the backend's renewal is too slow to watch.
	hold time.Duration
}

// backend is one Storage implementation under the contract test.
type backend struct {
	name string
	// stores sets the backend up for t and returns a maker of empty
	// stores. Redis: a redis-server of t's own (t is skipped without
	// one), a fresh key prefix per store, a 1s lock TTL.
	stores func(t *testing.T) func(t *testing.T) store
}

// backends are Redis and certmagic's FileStorage, whose behaviour the
// Redis storage must match.
var backends = []backend{
	{"redis", func(t *testing.T) func(t *testing.T) store {
		url := startRedis(t)
		n := 0
		return func(t *testing.T) store {
			n++
			u := fmt.Sprintf("%s?prefix=contract%d&lock_ttl=1s", url, n)
			return store{
				open: func(t *testing.T) certmagic.Storage { return newRedis(t, u) },
				crash: func(t *testing.T, name string) {
					s := newRedis(t, u)
					if err := s.Lock(context.Background(), name); err != nil {
						t.Fatal(err)
					}
					s.crash()
				},
				hold: 3 * time.Second,
			}
		}
	}},
	{"file", func(*testing.T) func(t *testing.T) store {
		return func(t *testing.T) store {
			dir := t.TempDir()
			return store{
				open: func(t *testing.T) certmagic.Storage { return &certmagic.FileStorage{Path: dir} },
				crash: func(t *testing.T, name string) {
					// The lock file of a holder whose last refresh is past
					// FileStorage's staleness limit (2 x 5s).
					old := time.Now().Add(-time.Minute)
					b, _ := json.Marshal(map[string]time.Time{"created": old, "updated": old})
					lock := filepath.Join(dir, "locks", certmagic.StorageKeys.Safe(name)+".lock")
					os.MkdirAll(filepath.Dir(lock), 0o700)
					if err := os.WriteFile(lock, b, 0o600); err != nil {
						t.Fatal(err)
					}
				},
			}
		}
	}},
}

// TestStorageContract runs the same cases against Redis and FileStorage.
func TestStorageContract(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, st store)
	}{
		{"data", contractData},
		{"delete", contractDelete},
		{"lock contention", contractContention},
		{"mutual exclusion", contractExclusion},
		{"lock honours ctx", contractLockCtx},
		{"crashed holder", contractCrash},
		{"renewal", contractRenewal},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			newStore := b.stores(t)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t)) })
			}
		})
	}
}

// contractFiles are stored by contractData and contractDelete: "ab/x" and
// "a/b-x" catch prefix matching by bytes instead of path components.
var contractFiles = map[string]string{
	"a/b/c":   "1",
	"a/b/d":   "22",
	"a/e":     "333",
	"a/b-x/z": "4444",
	"ab/x":    "55555",
}

func storeAll(t *testing.T, s certmagic.Storage) {
	t.Helper()
	for k, v := range contractFiles {
		if err := s.Store(context.Background(), k, []byte(v)); err != nil {
			t.Fatalf("Store(%q): %v", k, err)
		}
	}
}

func contractData(t *testing.T, st store) {
	ctx := context.Background()
	s, other := st.open(t), st.open(t)
	before := time.Now().Add(-time.Second) // file mtimes may be coarse
	storeAll(t, s)
	after := time.Now().Add(time.Second)

	for k, v := range contractFiles {
		if got, err := other.Load(ctx, k); err != nil || string(got) != v {
			t.Errorf("Load(%q) = %q, %v; want %q", k, got, err, v)
		}
	}
	for _, k := range []string{"nope", "a/b/nope", "a/bb/c"} {
		if _, err := other.Load(ctx, k); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load(%q): %v; want fs.ErrNotExist", k, err)
		}
	}
	for k, want := range map[string]bool{"a": true, "a/b": true, "a/b/c": true, "ab": true, "a/b/zz": false, "a/bb": false, "b": false} {
		if got := other.Exists(ctx, k); got != want {
			t.Errorf("Exists(%q) = %v; want %v", k, got, want)
		}
	}

	ki, err := other.Stat(ctx, "a/b/d")
	if err != nil || ki.Key != "a/b/d" || !ki.IsTerminal || ki.Size != 2 || ki.Modified.Before(before) || ki.Modified.After(after) {
		t.Errorf("Stat(a/b/d) = %+v, %v; want terminal, size 2, modified now", ki, err)
	}
	if ki, err := other.Stat(ctx, "a/b"); err != nil || ki.IsTerminal || ki.Key != "a/b" {
		t.Errorf("Stat(a/b) = %+v, %v; want a directory", ki, err)
	}
	if _, err := other.Stat(ctx, "a/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(a/nope): %v; want fs.ErrNotExist", err)
	}

	for _, tc := range []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"a", false, []string{"a/b", "a/b-x", "a/e"}},
		{"a", true, []string{"a/b", "a/b-x", "a/b-x/z", "a/b/c", "a/b/d", "a/e"}},
		{"a/b", false, []string{"a/b/c", "a/b/d"}},
		{"a/b/", false, []string{"a/b/c", "a/b/d"}},
		{"ab", true, []string{"ab/x"}},
		{"a/b/c", false, nil}, // a file has no children
	} {
		got, err := other.List(ctx, tc.prefix, tc.recursive)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, %v) = %q, %v; want %q", tc.prefix, tc.recursive, got, err, tc.want)
		}
	}
	if _, err := other.List(ctx, "nope", true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List(nope): %v; want fs.ErrNotExist", err)
	}

	if err := s.Store(ctx, "a/e", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, err := other.Load(ctx, "a/e"); err != nil || string(got) != "new" {
		t.Errorf("Load after overwrite = %q, %v; want new", got, err)
	}
}

func contractDelete(t *testing.T, st store) {
	ctx := context.Background()
	s, other := st.open(t), st.open(t)
	storeAll(t, s)
	if err := s.Delete(ctx, "a/b"); err != nil { // a directory: all below it
		t.Fatalf("Delete(a/b): %v", err)
	}
	for _, k := range []string{"a/b/c", "a/b/d"} {
		if other.Exists(ctx, k) {
			t.Errorf("%s survived Delete(a/b)", k)
		}
		if _, err := other.Load(ctx, k); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load(%q) after Delete: %v; want fs.ErrNotExist", k, err)
		}
	}
	for _, k := range []string{"a/e", "a/b-x/z", "ab/x"} {
		if !other.Exists(ctx, k) {
			t.Errorf("%s went with Delete(a/b)", k)
		}
	}
	if err := s.Delete(ctx, "a/e"); err != nil || other.Exists(ctx, "a/e") {
		t.Errorf("Delete(a/e): %v, exists %v", err, other.Exists(ctx, "a/e"))
	}
	if err := s.Delete(ctx, "never/was"); err != nil {
		t.Errorf("Delete of a missing key: %v; want nil", err)
	}
	if got, err := other.List(ctx, "a", true); err != nil || !slices.Contains(got, "a/b-x/z") || slices.Contains(got, "a/b/c") {
		t.Errorf("List(a) after deletes = %q, %v", got, err)
	}
}

// lockResult is when a Lock call in a goroutine returned, and how.
type lockResult struct {
	at  time.Time
	err error
}

func lockAsync(ctx context.Context, s certmagic.Storage, name string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		err := s.Lock(ctx, name)
		ch <- lockResult{time.Now(), err}
	}()
	return ch
}

// contractContention: a second client waits for the lock and gets it
// soon after the first unlocks.
func contractContention(t *testing.T, st store) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := st.open(t), st.open(t)
	if err := a.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.(certmagic.TryLocker).TryLock(ctx, "issue_cert_x"); ok || err != nil {
		t.Errorf("TryLock of a held lock = %v, %v; want false, nil", ok, err)
	}
	got := lockAsync(ctx, b, "issue_cert_x")
	select {
	case r := <-got:
		t.Fatalf("second client got a held lock: %v", r.err)
	case <-time.After(500 * time.Millisecond):
	}
	unlocked := time.Now()
	if err := a.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("second Lock: %v", r.err)
	}
	if d := r.at.Sub(unlocked); d > 2*time.Second {
		t.Errorf("second client got the lock %v after the unlock; want within 2s", d)
	}
	if err := b.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	if err := b.Unlock(ctx, "never_locked"); err == nil {
		t.Error("Unlock of a lock never taken succeeded")
	}
}

// contractExclusion: workers on two clients never overlap in the
// critical section.
func contractExclusion(t *testing.T, st store) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clients := []certmagic.Storage{st.open(t), st.open(t)}
	var (
		mu      sync.Mutex
		inside  int
		overlap bool
		wg      sync.WaitGroup
		errs    = make(chan error, 4)
	)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := clients[i%2]
			if err := s.Lock(ctx, "excl"); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			inside++
			overlap = overlap || inside > 1
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			inside--
			mu.Unlock()
			errs <- s.Unlock(ctx, "excl")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if overlap {
		t.Error("two holders at once")
	}
}

// contractLockCtx: Lock gives up with the context's error.
func contractLockCtx(t *testing.T, st store) {
	a, b := st.open(t), st.open(t)
	if err := a.Lock(context.Background(), "ctx"); err != nil {
		t.Fatal(err)
	}
	defer a.Unlock(context.Background(), "ctx")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Lock(ctx, "ctx")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock of a held lock: %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lock returned %v after its deadline", d)
	}
}

// contractCrash: the lock of a holder that died is taken over once it
// expires, without anyone unlocking it.
func contractCrash(t *testing.T, st store) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st.crash(t, "issue_cert_crash")
	b := st.open(t)
	start := time.Now()
	if err := b.Lock(ctx, "issue_cert_crash"); err != nil {
		t.Fatalf("Lock after the holder crashed: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("taken over after %v; want within the expiry (1s) and a poll", d)
	}
	if err := b.Unlock(ctx, "issue_cert_crash"); err != nil {
		t.Errorf("Unlock: %v", err)
	}
}

// contractRenewal: a live holder keeps its lock well past the expiry
// (renewed in the background), then releases it.
func contractRenewal(t *testing.T, st store) {
	if st.hold == 0 {
		t.Skip("the backend refreshes its locks every 5s: too slow to watch here")
	}
	ctx := context.Background()
	a, b := st.open(t), st.open(t)
	if err := a.Lock(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(st.hold)
	for time.Now().Before(deadline) {
		if ok, err := b.(certmagic.TryLocker).TryLock(ctx, "long"); ok || err != nil {
			t.Fatalf("TryLock of a renewed lock = %v, %v; want false", ok, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := a.Unlock(ctx, "long"); err != nil {
		t.Fatalf("Unlock after %v: %v", st.hold, err)
	}
	if ok, err := b.(certmagic.TryLocker).TryLock(ctx, "long"); !ok || err != nil {
		t.Errorf("TryLock after Unlock = %v, %v; want true", ok, err)
	}
	b.Unlock(ctx, "long")
}
