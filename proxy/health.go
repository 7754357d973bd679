package proxy

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// HealthCheck configures active health checks.
type HealthCheck struct {
	Path     string        // request path, e.g. "/healthz"
	Interval time.Duration // between checks of one upstream
	Timeout  time.Duration // per check; default Interval/2
	Status   int           // expected status; default 200
	// GRPC checks with the standard gRPC health service (grpc.health.v1
	// Health/Check) instead of GET Path: healthy while it answers SERVING
	// for GRPCService ("" asks about the server as a whole). The client
	// must speak HTTP/2 to the upstreams.
	GRPC        bool
	GRPCService string
}

// RunHealthChecks checks every upstream each interval until ctx is done: an
// upstream that fails a check is marked down until a check passes.
// onChange, if not nil, is told about each change of state.
func (p *Pool) RunHealthChecks(ctx context.Context, hc HealthCheck, client *http.Client, onChange func(u *Upstream, healthy bool, err error)) {
	if hc.Timeout <= 0 {
		hc.Timeout = hc.Interval / 2
	}
	if hc.Status == 0 && !hc.GRPC {
		hc.Status = http.StatusOK
	}
	t := time.NewTicker(hc.Interval)
	defer t.Stop()
	for {
		for _, u := range p.Upstreams {
			err := checkOnce(ctx, client, u, hc)
			was := u.Healthy()
			if err != nil {
				// Down until a later check passes (or a cool-down, whichever is
				// later, so passive marks are not cut short).
				u.downUntil.Store(time.Now().Add(hc.Interval + hc.Timeout).UnixNano())
			} else if !was {
				u.downUntil.Store(0)
				u.fails.Store(0)
			}
			if onChange != nil && was != (err == nil) {
				onChange(u, err == nil, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func checkOnce(ctx context.Context, client *http.Client, u *Upstream, hc HealthCheck) error {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	if hc.GRPC {
		return checkGRPC(ctx, client, u, hc.GRPCService)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.URL.JoinPath(hc.Path).String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != hc.Status {
		return fmt.Errorf("health check %s: status %d, want %d", req.URL, resp.StatusCode, hc.Status)
	}
	return nil
}
