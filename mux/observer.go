package mux

import "time"

// Observer is told about connections, for metrics. Its methods are called
// from many goroutines at once and must not block.
type Observer interface {
	// Sniffed is called when a connection's protocol is known (or the
	// sniff gave up), d after it was accepted.
	Sniffed(p Protocol, d time.Duration)
	// Started is called when a routed connection is handed to its handler.
	Started(info *Info, route string)
	// Finished is called once per connection that reached Sniffed, with
	// its route ("" if none) and result. For connections that Started,
	// it comes after the handler returned.
	Finished(info *Info, route string, started bool, res *Result, d time.Duration)
	// Refused is called for a connection refused before sniffing (see
	// Limits and the Refused* reasons).
	Refused(reason string)
}

// nopObserver is the Observer used when none is set.
type nopObserver struct{}

func (nopObserver) Sniffed(Protocol, time.Duration)                      {}
func (nopObserver) Started(*Info, string)                                {}
func (nopObserver) Finished(*Info, string, bool, *Result, time.Duration) {}
func (nopObserver) Refused(string)                                       {}
