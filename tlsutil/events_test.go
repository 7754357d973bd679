package tlsutil

import (
	"context"
	"errors"
	"testing"
)

// TestOnEvent feeds certmagic's event shapes (v0.25.6 config.go) to the
// hook and checks the logged event, name and issuer.
func TestOnEvent(t *testing.T) {
	log, logs := observed(t)
	m := &Manager{log: log, issuerKey: "ik"}
	for _, tc := range []struct {
		event      string
		data       map[string]any
		msg, want  string
		wantIssuer string
	}{
		{"cert_obtained", map[string]any{"identifier": "a.test", "issuer": "ca1", "renewal": false}, "certificate obtained", EventObtained, "ca1"},
		{"cert_obtained", map[string]any{"identifier": "a.test", "issuer": "ca1", "renewal": true}, "certificate renewed", EventRenewed, "ca1"},
		{"cert_failed", map[string]any{"identifier": "a.test", "issuers": []string{"ca1", "ca2"}, "renewal": false, "error": errors.New("boom")}, "certificate failed", EventFailed, "ca1,ca2"},
		{"cert_ocsp_revoked", map[string]any{"subjects": []string{"a.test"}}, "certificate revoked", EventRevoked, "ik"},
	} {
		if err := m.onEvent(context.Background(), tc.event, tc.data); err != nil {
			t.Errorf("onEvent(%s) = %v; want nil (an error would abort certmagic)", tc.event, err)
		}
		got := logs.TakeAll()
		if len(got) != 1 || got[0].Message != tc.msg {
			t.Fatalf("%s: logged %v; want one %q", tc.event, got, tc.msg)
		}
		f := got[0].ContextMap()
		if f["event"] != tc.want || f["name"] != "a.test" || f["issuer"] != tc.wantIssuer {
			t.Errorf("%s: fields %v; want event=%s name=a.test issuer=%s", tc.event, f, tc.want, tc.wantIssuer)
		}
	}
	if shouldEmit("tls_get_certificate") {
		t.Error("shouldEmit(tls_get_certificate) = true; it runs on every handshake and we ignore it")
	}
}
