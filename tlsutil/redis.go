package tlsutil

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Defaults of a Redis storage URL's query parameters.
const (
	// DefaultRedisPrefix starts every Redis key portmux writes, so several
	// deployments (or other applications) can share one Redis database.
	DefaultRedisPrefix = "portmux"
	// DefaultRedisLockTTL is how long a lock outlives its holder's last
	// renewal: a replica that crashes while it holds a lock blocks the
	// others for at most this long. Holders renew every third of it.
	DefaultRedisLockTTL = 10 * time.Second
)

// redisOpTimeout bounds an Unlock, which runs even when the caller's
// context has ended, and the releases of Close.
const redisOpTimeout = 5 * time.Second

// validPrefix keeps key prefixes readable and free of the ':' separator.
var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// RedisStorage is a certmagic.Storage (with its Locker and TryLocker) kept
// in one Redis database, so that several portmux replicas share their
// certificates, ACME account, challenge tokens and internal CA, and take
// turns (distributed locks) to obtain or renew a certificate.
//
// Keys, for the default prefix "portmux":
//
//	portmux:data:<key>   hash: value, modified (Unix ns)
//	portmux:index        sorted set of every stored key (score 0), read by
//	                     lexical range for List, directory Exists and Delete
//	portmux:lock:<name>  a lock: a random token, with an expiry (PX)
//
// Keys use certmagic's '/' paths with FileStorage's semantics: "a" is a
// directory when "a/..." keys exist, List returns full keys (children
// only, or every file and directory below when recursive), and Load, Stat
// and List wrap fs.ErrNotExist for missing keys.
//
// A lock is SET NX with an expiry (the URL's lock_ttl, default 10s) that a
// goroutine renews every third of it while the lock is held; Unlock (a Lua
// compare-and-delete) removes it only if it still holds this holder's
// token, so a lock that expired and was taken by another replica stays
// theirs. A crashed holder's lock expires by itself. Lock polls with
// backoff (50ms doubling up to 1s) until acquired or ctx ends.
//
// RedisStorage needs a standalone Redis (or one endpoint in front of a
// replicated one, such as a managed service or Sentinel's current
// primary): Delete runs a Lua script over keys it does not declare, which
// Redis Cluster refuses. Values are not encrypted: protect the Redis (ACL
// password, TLS with rediss://, a private network), as it holds private
// keys.
//
// go-redis writes a few messages (such as repeated dial failures) through
// its own process-wide logger, to standard error; tlsutil does not change
// that global state (redis.SetLogger in a main package can).
//
// It is safe for concurrent use. Create it with NewRedisStorage and end it
// with Close.
type RedisStorage struct {
	client  *redis.Client
	prefix  string
	lockTTL time.Duration
	display string // the URL without its password
	log     *zap.Logger

	mu     sync.Mutex
	locks  map[string]*heldLock // locks this storage holds, by name
	closed bool
}

var (
	_ certmagic.Storage   = (*RedisStorage)(nil)
	_ certmagic.TryLocker = (*RedisStorage)(nil)
)

// IsRedisURL reports whether storage names a Redis server (redis:// or
// rediss://) rather than a directory.
func IsRedisURL(storage string) bool {
	s := strings.ToLower(storage)
	return strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://")
}

// NewRedisStorage returns a storage in the Redis database at rawURL:
//
//	redis://[user:password@]host[:port][/db][?prefix=portmux&lock_ttl=10s]
//	rediss://...   (TLS, verified against the system roots)
//
// The port defaults to 6379 and db to 0. Query parameters: prefix (key
// prefix, default "portmux": letters, digits, '_', '.', '-'), lock_ttl (a
// Go duration from 1s to 1h), and go-redis's own connection options
// (dial_timeout, read_timeout, write_timeout, pool_size, ...), except
// skip_verify, which is refused: rediss:// always verifies the server.
//
// NewRedisStorage does not connect: go-redis dials on first use, so a
// Redis that is down shows in the errors of storage operations. log
// receives lock renewal problems; nil means none.
func NewRedisStorage(rawURL string, log *zap.Logger) (*RedisStorage, error) {
	if log == nil {
		log = zap.NewNop()
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis storage: invalid URL: %w", redactURLError(err))
	}
	display := u.Redacted()
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "redis" && scheme != "rediss") || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("redis storage %s: want redis://host or rediss://host", display)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("redis storage %s: unexpected fragment", display)
	}
	u.Scheme = scheme
	q := u.Query()
	s := &RedisStorage{prefix: DefaultRedisPrefix, lockTTL: DefaultRedisLockTTL, log: log, locks: map[string]*heldLock{}}
	if q.Has("prefix") {
		s.prefix = q.Get("prefix")
		if !validPrefix.MatchString(s.prefix) {
			return nil, fmt.Errorf("redis storage %s: prefix %q: want 1-64 letters, digits, '_', '.' or '-'", display, s.prefix)
		}
		q.Del("prefix")
	}
	if q.Has("lock_ttl") {
		ttl, err := time.ParseDuration(q.Get("lock_ttl"))
		if err != nil || ttl < time.Second || ttl > time.Hour {
			return nil, fmt.Errorf("redis storage %s: lock_ttl %q: want a duration from 1s to 1h", display, q.Get("lock_ttl"))
		}
		s.lockTTL = ttl
		q.Del("lock_ttl")
	}
	if q.Has("skip_verify") {
		return nil, fmt.Errorf("redis storage %s: skip_verify is not supported: rediss:// verifies the server against the system roots", display)
	}
	u.RawQuery = q.Encode()
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("redis storage %s: %w", display, redactURLError(err))
	}
	// Maintenance notifications are a Redis Enterprise/Cloud feature; in
	// auto mode go-redis probes for them and logs (globally) when a plain
	// Redis says no.
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	s.client = redis.NewClient(opts)
	q.Set("prefix", s.prefix)
	u.RawQuery = q.Encode()
	s.display = u.Redacted()
	return s, nil
}

// redactURLError drops the URL (and with it any password) that url.Parse
// puts in its errors.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// String describes the storage without its password (certmagic logs it).
func (s *RedisStorage) String() string { return "RedisStorage:" + s.display }

// Close releases the locks this storage still holds (so other replicas
// need not wait for them to expire), then closes the connections. Later
// operations fail, except Unlock of a lock Close released.
func (s *RedisStorage) Close() error {
	s.mu.Lock()
	held := s.locks
	s.locks = map[string]*heldLock{}
	s.closed = true
	s.mu.Unlock()
	for name, l := range held {
		l.stop()
		ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
		_ = s.release(ctx, name, l.token) // best effort: it expires anyway
		cancel()
	}
	return s.client.Close()
}

// dataKey is the Redis key of a storage key's hash.
func (s *RedisStorage) dataKey(key string) string { return s.prefix + ":data:" + key }

// indexKey is the sorted set of every stored key.
func (s *RedisStorage) indexKey() string { return s.prefix + ":index" }

// lockKey is the Redis key of a lock.
func (s *RedisStorage) lockKey(name string) string { return s.prefix + ":lock:" + name }
