package main

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portmux/portmux/mux"
)

// metrics are portmux's Prometheus metrics, on their own registry (no
// global state) served by the admin listener.
type metrics struct {
	registry    *prometheus.Registry
	conns       *prometheus.CounterVec   // protocol, route, outcome
	active      *prometheus.GaugeVec     // protocol
	bytes       *prometheus.CounterVec   // route, direction
	duration    *prometheus.HistogramVec // protocol
	sniff       *prometheus.HistogramVec // protocol
	dialErrors  *prometheus.CounterVec   // route
	reloads     *prometheus.CounterVec   // result
	configInfo  *prometheus.GaugeVec     // hash
	certExpiry  *prometheus.GaugeVec     // name
	httpReqs    *prometheus.CounterVec   // route, code
	httpLatency *prometheus.HistogramVec // route
	refused     *prometheus.CounterVec   // reason
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portmux_connections_total",
			Help: "Finished connections by detected protocol, route and outcome."}, []string{"protocol", "route", "outcome"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "portmux_connections_active",
			Help: "Connections being relayed or served now."}, []string{"protocol"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portmux_bytes_total",
			Help: "Bytes relayed, up (client to backend) and down."}, []string{"route", "direction"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portmux_connection_duration_seconds",
			Help: "Connection lifetimes, from accept to close.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{"protocol"}),
		sniff: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portmux_sniff_duration_seconds",
			Help: "Time from accept to a protocol decision.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"protocol"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portmux_backend_dial_errors_total",
			Help: "Failed connections to backends."}, []string{"route"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portmux_reloads_total",
			Help: "Config reloads by result (ok, failed)."}, []string{"result"}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "portmux_config_info",
			Help: "1 for the SHA-256 (first 12 hex digits) of the config in use."}, []string{"hash"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "portmux_certificate_expiry_timestamp_seconds",
			Help: "When the managed certificate for a name expires (Unix time)."}, []string{"name"}),
		httpReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portmux_http_requests_total",
			Help: "Proxied HTTP requests by route and status code."}, []string{"route", "code"}),
		httpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portmux_http_request_duration_seconds",
			Help: "Proxied HTTP request durations.", Buckets: prometheus.DefBuckets}, []string{"route"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portmux_connections_refused_total",
			Help: "Connections refused before sniffing, by reason (limits, PROXY header)."}, []string{"reason"}),
	}
	m.registry.MustRegister(m.conns, m.active, m.bytes, m.duration, m.sniff, m.dialErrors, m.reloads, m.configInfo,
		m.certExpiry, m.httpReqs, m.httpLatency, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"ok", "failed"} {
		m.reloads.WithLabelValues(r) // present at 0 before the first reload
	}
	return m
}

var _ mux.Observer = (*metrics)(nil)

// Sniffed implements mux.Observer.
func (m *metrics) Sniffed(p mux.Protocol, d time.Duration) {
	m.sniff.WithLabelValues(p.String()).Observe(d.Seconds())
}

// Started implements mux.Observer.
func (m *metrics) Started(info *mux.Info, _ string) {
	m.active.WithLabelValues(info.Protocol.String()).Inc()
}

// Finished implements mux.Observer.
func (m *metrics) Finished(info *mux.Info, route string, started bool, res *mux.Result, d time.Duration) {
	proto := info.Protocol.String()
	if started {
		m.active.WithLabelValues(proto).Dec()
	}
	outcome := res.Outcome
	if outcome == "" {
		outcome = mux.OutcomeOK
		if res.Err != nil {
			outcome = mux.OutcomeError
		}
	}
	m.conns.WithLabelValues(proto, route, outcome).Inc()
	m.duration.WithLabelValues(proto).Observe(d.Seconds())
	if route != "" {
		m.bytes.WithLabelValues(route, "up").Add(float64(res.Up))
		m.bytes.WithLabelValues(route, "down").Add(float64(res.Down))
	}
	if outcome == mux.OutcomeDialFailed {
		m.dialErrors.WithLabelValues(route).Inc()
	}
}

// Refused implements mux.Observer.
func (m *metrics) Refused(reason string) {
	m.refused.WithLabelValues(reason).Inc()
}

// setConfig records the hash of the config now in use.
func (m *metrics) setConfig(hash string) {
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(hash).Set(1)
}

// request records one proxied HTTP request (proxy.HTTPProxy.OnRequest).
func (m *metrics) request(route string, status int, d time.Duration) {
	m.httpReqs.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.httpLatency.WithLabelValues(route).Observe(d.Seconds())
}
