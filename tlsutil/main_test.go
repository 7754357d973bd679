package tlsutil

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if goroutines outlive the tests, except those
// upstream code never stops (each is named with why).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Pebble's VA task loop has no stop (DEPENDENCIES.md).
		goleak.IgnoreAnyFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		// certmagic keeps one ACME rate limiter per CA+email in a package
		// map and never stops it ("TODO: stop rate limiter" in acmeclient.go).
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		// FileStorage refreshes a lock file every 5s and notices the unlock
		// only at its next tick, up to 5s after Unlock.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
}
