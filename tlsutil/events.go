package tlsutil

import (
	"context"
	"strings"

	"go.uber.org/zap"
)

// Event names logged in the "event" field. certmagic v0.25.6 emits
// "cert_obtained" for both new and renewed certificates (data "renewal"
// tells them apart) and "cert_failed" for both; we split the first.
const (
	EventObtained = "cert_obtained"
	EventRenewed  = "cert_renewed"
	EventFailed   = "cert_failed"
	EventRevoked  = "cert_ocsp_revoked"
)

// shouldEmit tells certmagic which events onEvent uses, so it skips
// building the data of the others (tls_get_certificate on every handshake).
func shouldEmit(event string) bool {
	switch event {
	case EventObtained, EventFailed, EventRevoked:
		return true
	}
	return false
}

// onEvent is certmagic's OnEvent hook: it logs certificate events with the
// keys event, name and issuer. It never returns an error, as that would
// abort certmagic's operation.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case EventObtained:
		issuer, _ := data["issuer"].(string)
		msg, ev := "certificate obtained", EventObtained
		if renewal {
			msg, ev = "certificate renewed", EventRenewed
		}
		m.log.Info(msg, zap.String("event", ev), zap.String("name", name), zap.String("issuer", issuer))
	case EventFailed:
		issuers, _ := data["issuers"].([]string)
		err, _ := data["error"].(error)
		m.log.Error("certificate failed", zap.String("event", EventFailed), zap.String("name", name),
			zap.String("issuer", strings.Join(issuers, ",")), zap.Bool("renewal", renewal), zap.Error(err))
	case EventRevoked:
		names, _ := data["subjects"].([]string)
		m.log.Warn("certificate revoked", zap.String("event", EventRevoked), zap.String("name", strings.Join(names, ",")), zap.String("issuer", m.issuerKey))
	}
	return nil
}
