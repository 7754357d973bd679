package test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestE2EL7RoundRobin: sequential requests to a route with three upstreams are
// spread exactly evenly.
func TestE2EL7RoundRobin(t *testing.T) {
	bs := []*l7Backend{startL7Backend(t, "a"), startL7Backend(t, "b"), startL7Backend(t, "c")}
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: pool
    match: {protocol: http}
    upstreams: ["http://%s", "http://%s", "http://%s"]
    balance: round_robin
`, bs[0].Addr(), bs[1].Addr(), bs[2].Addr()))
	hc := newL7Client(t, pm.Addr(), "")
	const n = 30
	count := map[string]int{}
	for i := 0; i < n; i++ {
		seen, _, err := hc.getSeen(fmt.Sprintf("http://pool.test/rr/%d", i), "", nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		count[seen.Backend]++
	}
	for _, b := range bs {
		if count[b.Name] != n/3 {
			t.Errorf("round_robin: counts %v; want %d each", count, n/3)
			break
		}
	}
	// The access log names the upstream that answered.
	rl := pm.WaitLog(t, requestLog("/rr/0"), 10*time.Second)
	if u := rl.Str("upstream"); u != bs[0].Addr() && u != bs[1].Addr() && u != bs[2].Addr() {
		t.Errorf("request line upstream %q; want one of the three", u)
	}
}

// TestE2EL7IPHash: with ip_hash every request of one client IP goes to the same
// upstream (clients dial from 16 loopback addresses 127.0.0.1-16), and the
// clients are not all sent to one upstream.
func TestE2EL7IPHash(t *testing.T) {
	bs := []*l7Backend{startL7Backend(t, "a"), startL7Backend(t, "b"), startL7Backend(t, "c")}
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: pool
    match: {protocol: http}
    upstreams: ["http://%s", "http://%s", "http://%s"]
    balance: ip_hash
`, bs[0].Addr(), bs[1].Addr(), bs[2].Addr()))
	used := map[string]int{}
	for i := 1; i <= 16; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		first := ""
		for j := 0; j < 4; j++ {
			hc := newL7Client(t, pm.Addr(), ip) // a new connection each time
			seen, _, err := hc.getSeen(fmt.Sprintf("http://pool.test/iphash/%d/%d", i, j), "", nil)
			hc.Tr.CloseIdleConnections()
			if err != nil {
				t.Fatalf("client %s request %d: %v", ip, j, err)
			}
			if got := seen.Header.Get("X-Forwarded-For"); got != ip {
				t.Fatalf("client %s: upstream saw X-Forwarded-For %q; the client address is not %s", ip, got, ip)
			}
			if first == "" {
				first = seen.Backend
				used[first]++
			} else if seen.Backend != first {
				t.Errorf("client %s: request %d served by %q, earlier ones by %q; want the same upstream", ip, j, seen.Backend, first)
			}
		}
	}
	t.Logf("clients per upstream: %v", used)
	if len(used) < 2 {
		t.Errorf("16 client IPs all hashed to %v; want them spread over more than one upstream", used)
	}
}

// TestE2EL7Failover: one of three upstreams is closed while clients keep
// sending requests. No request fails (a refused connection is retried on
// another upstream), and once passive health has marked it down it is skipped:
// a server that comes back on its port receives nothing during the cooldown.
func TestE2EL7Failover(t *testing.T) {
	bs := []*l7Backend{startL7Backend(t, "a"), startL7Backend(t, "b"), startL7Backend(t, "c")}
	deadAddr := bs[2].Addr()
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: pool
    match: {protocol: http}
    upstreams: ["http://%s", "http://%s", "http://%s"]
    passive_health: {max_fails: 2, cooldown: 5m}
`, bs[0].Addr(), bs[1].Addr(), deadAddr))

	// clients returns k clients, made on the test goroutine (they register
	// cleanups); run sends n requests spread over them concurrently and returns
	// the failures and the backends that answered.
	clients := func(k int) []*l7Client {
		var cs []*l7Client
		for i := 0; i < k; i++ {
			cs = append(cs, newL7Client(t, pm.Addr(), ""))
		}
		return cs
	}
	run := func(phase string, cs []*l7Client, n int) (fails []string, served map[string]int) {
		var mu sync.Mutex
		served = map[string]int{}
		var wg sync.WaitGroup
		for w, hc := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n/len(cs); i++ {
					seen, _, err := hc.getSeen(fmt.Sprintf("http://pool.test/%s/%d/%d", phase, w, i), "", nil)
					mu.Lock()
					if err != nil {
						fails = append(fails, err.Error())
					} else {
						served[seen.Backend]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return fails, served
	}

	fails, served := run("before", clients(3), 30)
	if len(fails) != 0 || served["c"] == 0 {
		t.Fatalf("before the failure: %d failed (%q), served %v; want none failed and c in use", len(fails), fails, served)
	}

	// Close c while requests are in flight.
	type result struct {
		fails  []string
		served map[string]int
	}
	done := make(chan result, 1)
	during := clients(3)
	go func() {
		f, s := run("during", during, 60)
		done <- result{f, s}
	}()
	time.Sleep(50 * time.Millisecond) // let the workers start; not an assertion
	bs[2].Server.Close()
	r := <-done
	if len(r.fails) != 0 {
		t.Errorf("while c went down: %d request(s) failed; want 0 (retried on another upstream)\nfirst: %s", len(r.fails), r.fails[0])
	}
	t.Logf("served while c went down: %v", r.served)

	fails, served = run("after", clients(3), 30)
	if len(fails) != 0 || served["c"] != 0 || served["a"]+served["b"] != 30 {
		t.Errorf("after c went down: %d failed (%q), served %v; want 30 served by a and b", len(fails), fails, served)
	}

	// Something listens on c's port again: while c is marked down (cooldown
	// 5m) portmux must not send it anything.
	ln, err := net.Listen("tcp", deadAddr)
	if err != nil {
		t.Logf("cannot listen on %s again (%v): skipping the skip check", deadAddr, err)
		return
	}
	var revived sync.Mutex
	revivedHits := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		revived.Lock()
		revivedHits++
		revived.Unlock()
		w.Header().Set("X-Backend-Name", "c-revived")
		w.Write([]byte(`{"backend":"c-revived"}`))
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	fails, served = run("skipped", clients(3), 30)
	revived.Lock()
	hits := revivedHits
	revived.Unlock()
	if len(fails) != 0 || hits != 0 {
		t.Errorf("during c's cooldown: %d failed, c's port got %d request(s), served %v; want 0 and 0 (c skipped)", len(fails), hits, served)
	}
}
