package test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
)

// stream returns a deterministic pseudo-random byte stream for seed. Two streams with
// the same seed yield the same bytes, so a receiver can check what a sender generated
// without either side holding the whole payload in memory.
func stream(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// payload returns n deterministic bytes for seed.
func payload(seed uint64, n int64) io.Reader {
	return io.LimitReader(stream(seed), n)
}

// digest is the sha256 and length of a byte stream.
type digest struct {
	Sum string
	N   int64
}

// digestOf reads r to EOF.
func digestOf(r io.Reader) (digest, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return digest{Sum: hex.EncodeToString(h.Sum(nil)), N: n}, err
}

// digestPayload is the digest of payload(seed, n).
func digestPayload(t testing.TB, seed uint64, n int64) digest {
	t.Helper()
	d, err := digestOf(payload(seed, n))
	if err != nil {
		t.Fatalf("hashing payload: %v", err)
	}
	return d
}

// digestBytes is the digest of b.
func digestBytes(b []byte) digest {
	s := sha256.Sum256(b)
	return digest{Sum: hex.EncodeToString(s[:]), N: int64(len(b))}
}

// isClosedErr reports whether err is how a reader learns that the peer closed the
// connection: EOF, or a reset when the peer closed with unread data in its buffer.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
