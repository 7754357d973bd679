package test

import (
	"testing"
	"time"
)

// TestE2EHTTP sends real net/http requests through portmux to the HTTP backend.
func TestE2EHTTP(t *testing.T) {
	w := startWorld(t, worldOpts{})
	hc := newHTTPClient(t, w.PM.Addr())

	t.Run("GET", func(t *testing.T) {
		if err := getHello(hc, "web.test"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("POST 1MB", func(t *testing.T) {
		if err := postEcho(hc, "web.test", 31, 1<<20+7); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("POST empty", func(t *testing.T) {
		if err := postEcho(hc, "web.test", 32, 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("log", func(t *testing.T) {
		hc.tr.CloseIdleConnections()
		locals := hc.Locals()
		if len(locals) == 0 {
			t.Fatal("no client connection recorded")
		}
		for _, local := range locals {
			l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
			checkFields(t, l, map[string]string{"protocol": "http", "route": "web", "outcome": "ok"})
		}
	})
}
