package test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestE2EOpsReloadKeepsNewHTTPConnections: HTTP requests on new connections that
// arrive while a reload swaps the config must all be answered, by the old
// config's backend or the new one's. 4 clients send GET /id back to back, each on
// a new connection, during 150 reloads that move the HTTP route between two
// backends. A connection routed by the old table just as the old generation is
// retired must still get its response.
func TestE2EOpsReloadKeepsNewHTTPConnections(t *testing.T) {
	one, two := startOpsWeb(t, "one", nil, nil), startOpsWeb(t, "two", nil, nil)
	admin := closedPort(t)
	config := func(version int) string {
		to := one.URL
		if version%2 == 1 {
			to = two.URL
		}
		return fmt.Sprintf(`# version %d
listen: ["127.0.0.1:0"]
sniff_timeout: 10s   # no silent clients here: only a guard
admin: {listen: %q}
shutdown_grace: 1m
log: {level: info, format: json}
routes:
  - name: web
    match: {protocol: http}
    to: %s
`, version, admin, to)
	}
	pm := startOpsPM(t, config(0))

	const (
		clients = 4
		reloads = 150
	)
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		failed int
		done   int
	)
	deadline := time.Now().Add(10 * time.Minute)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := opsHTTPClient(pm.Addr())
			for i := 0; i < 100_000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				id, err := opsGetID(hc)
				if err == nil && id != one.ID && id != two.ID {
					err = fmt.Errorf("reached backend %q", id)
				}
				mu.Lock()
				done++
				if err != nil {
					if failed++; len(errs) < 10 {
						errs = append(errs, fmt.Sprintf("client %d request %d: %v", c, i, err))
					}
				}
				mu.Unlock()
			}
		}()
	}
	func() {
		defer func() { close(stop); wg.Wait() }()
		for v := 1; v <= reloads; v++ {
			pm.Reload(t, config(v), true, nil)
		}
	}()

	t.Logf("%d requests during %d reloads", done, reloads)
	if failed > 0 {
		t.Errorf("%d of %d requests failed; the first ones:", failed, done)
		for _, e := range errs {
			t.Errorf("  %s", e)
		}
	}
	var bad []string
	for _, l := range pm.Logs() {
		if n, _ := l.Num("bytes_down"); l.Msg() == "connection" && (l.Str("outcome") != "ok" || n == 0) {
			bad = append(bad, l.Raw)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d connection(s) ended without a response byte or not ok; the first ones:", len(bad))
		for _, l := range bad[:min(len(bad), 10)] {
			t.Errorf("  %s", l)
		}
	}
	last := one.URL
	if reloads%2 == 1 {
		last = two.URL
	}
	if got, want := pm.Routes(t), []string{"web http -> " + last}; !slices.Equal(got, want) {
		t.Errorf("GET /routes after the last reload: %q; want %q", got, want)
	}
}
