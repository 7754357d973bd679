package proxy

// growStackPad is the stack growStack asks for. net/http's h2 server runs
// each request's handler on a new goroutine, whose stack the runtime
// sizes from the average of all goroutines (most of them small), and the
// ReverseProxy outgrew it on nearly every request, deep in its call chain
// (httputil's cleanQueryParams): a stack copy there walks every frame and
// took 5.5% of portmux's CPU per h2 request. Grown at the handler's entry,
// with a few frames to move, the copy took 2.6% (pprof, h2load).
const growStackPad = 4 << 10

// stackPadIndex is read by growStack, so that the compiler keeps its
// array: always 0.
var stackPadIndex int

// growStack makes the calling goroutine's stack hold growStackPad bytes
// more than it holds now, growing it while the goroutine is shallow.
//
//go:noinline
func growStack() byte {
	var pad [growStackPad]byte
	return pad[stackPadIndex]
}
