package tlsutil

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Lock polling: the first retry waits lockPollMin, each next one twice as
// long up to lockPollMax, each with up to 25% jitter.
const (
	lockPollMin = 50 * time.Millisecond
	lockPollMax = time.Second
)

// errLockLost is wrapped by Unlock when the lock expired (its holder could
// not renew it in time) and may now belong to another replica.
var errLockLost = errors.New("lock expired before it was released")

// heldLock is a lock this storage holds and renews.
type heldLock struct {
	token  string
	cancel context.CancelFunc // stops the renewal
	done   chan struct{}      // closed when the renewal has stopped
}

// stop ends the renewal and waits for it.
func (l *heldLock) stop() {
	l.cancel()
	<-l.done
}

// renewScript extends a lock's expiry if it still holds our token.
// KEYS[1] lock; ARGV[1] token, ARGV[2] TTL in ms.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript deletes a lock if it still holds our token.
// KEYS[1] lock; ARGV[1] token.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// Lock implements certmagic.Locker: it blocks until it holds the lock
// name or ctx ends (then it returns ctx's error). While held, the lock is
// renewed in the background until Unlock or Close.
func (s *RedisStorage) Lock(ctx context.Context, name string) error {
	wait := lockPollMin
	for {
		ok, err := s.TryLock(ctx, name)
		if ok || err != nil {
			return err
		}
		t := time.NewTimer(wait + rand.N(wait/4))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redis storage: lock %s: %w", name, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, lockPollMax)
	}
}

// TryLock implements certmagic.TryLocker: one attempt to take the lock
// name, true if it is now held (and renewed, as by Lock).
func (s *RedisStorage) TryLock(ctx context.Context, name string) (bool, error) {
	token := cryptorand.Text() // 128 random bits
	ok, err := s.client.SetNX(ctx, s.lockKey(name), token, s.lockTTL).Result()
	if err != nil {
		return false, fmt.Errorf("redis storage: lock %s: %w", name, err)
	}
	if !ok {
		return false, nil
	}
	rctx, cancel := context.WithCancel(context.Background())
	l := &heldLock{token: token, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed { // Close ran meanwhile: it could not release this one
		s.mu.Unlock()
		cancel()
		_ = s.release(context.WithoutCancel(ctx), name, token)
		return false, fmt.Errorf("redis storage: lock %s: %w", name, redis.ErrClosed)
	}
	old := s.locks[name] // ours, but it expired and we took it anew
	s.locks[name] = l
	s.mu.Unlock()
	if old != nil {
		old.stop()
	}
	go s.renewLock(rctx, name, l)
	return true, nil
}

// renewLock extends the lock's expiry every third of the TTL until ctx
// ends or the lock turns out to be lost. A failed renewal is retried at
// the next tick: two may fail before the lock expires.
func (s *RedisStorage) renewLock(ctx context.Context, name string, l *heldLock) {
	defer close(l.done)
	t := time.NewTicker(s.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		octx, cancel := context.WithTimeout(ctx, s.lockTTL/3) // before the next tick
		n, err := renewScript.Run(octx, s.client, []string{s.lockKey(name)}, l.token, s.lockTTL.Milliseconds()).Int()
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("renewing storage lock failed", zap.String("lock", name), zap.Error(err))
		case n == 0:
			s.log.Error("storage lock lost: it expired before its renewal and may be held by another replica", zap.String("lock", name))
			return
		}
	}
}

// Unlock implements certmagic.Locker. It releases the lock even if ctx
// has ended (certmagic unlocks with the context of the canceled work),
// within 5s. It returns an error if this storage does not hold name, or
// (wrapping errLockLost) if the lock had expired meanwhile.
func (s *RedisStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	l := s.locks[name]
	delete(s.locks, name)
	closed := s.closed
	s.mu.Unlock()
	switch {
	case l == nil && closed:
		return nil // Close released it
	case l == nil:
		return fmt.Errorf("redis storage: unlock %s: not locked here", name)
	}
	l.stop()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisOpTimeout)
	defer cancel()
	return s.release(ctx, name, l.token)
}

// release deletes the lock if it still holds token.
func (s *RedisStorage) release(ctx context.Context, name, token string) error {
	n, err := unlockScript.Run(ctx, s.client, []string{s.lockKey(name)}, token).Int()
	if err != nil {
		return fmt.Errorf("redis storage: unlock %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("redis storage: unlock %s: %w", name, errLockLost)
	}
	return nil
}
