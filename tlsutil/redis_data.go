package tlsutil

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// The data half of RedisStorage: certmagic.Storage without the Locker.

// cleanKey normalizes a storage key as FileStorage's filepath.Join does:
// no leading, trailing or doubled '/', no '.' or '..' elements.
func cleanKey(key string) string {
	return strings.TrimPrefix(path.Clean("/"+key), "/")
}

// below returns the lexical range of the index that holds exactly the
// keys under dir ("a" -> "a/..."); all keys for the root "".
func below(dir string) (lo, hi string) {
	if dir == "" {
		return "-", "+"
	}
	// '0' follows '/' in ASCII: every "dir/..." is >= "dir/" and < "dir0".
	return "[" + dir + "/", "(" + dir + "0"
}

// hasChildren reports whether keys exist under dir.
func (s *RedisStorage) hasChildren(ctx context.Context, dir string) (bool, error) {
	lo, hi := below(dir)
	n, err := s.client.ZLexCount(ctx, s.indexKey(), lo, hi).Result()
	return n > 0, err
}

// Store implements certmagic.Storage. The value and the index entry are
// written in one MULTI/EXEC transaction.
func (s *RedisStorage) Store(ctx context.Context, key string, value []byte) error {
	key = cleanKey(key)
	if key == "" {
		return errors.New("redis storage: store: empty key")
	}
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.dataKey(key), "value", value, "modified", strconv.FormatInt(time.Now().UnixNano(), 10))
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: key})
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis storage: store %s: %w", key, err)
	}
	return nil
}

// Load implements certmagic.Storage.
func (s *RedisStorage) Load(ctx context.Context, key string) ([]byte, error) {
	key = cleanKey(key)
	b, err := s.client.HGet(ctx, s.dataKey(key), "value").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis storage: load %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("redis storage: load %s: %w", key, err)
	}
	return b, nil
}

// deleteScript removes a key and every key under it, atomically.
// KEYS[1] index; ARGV: data key prefix, key, low and high lexical bounds.
var deleteScript = redis.NewScript(`
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[3], ARGV[4])
for _, m in ipairs(members) do
	redis.call('DEL', ARGV[1] .. m)
	redis.call('ZREM', KEYS[1], m)
end
if ARGV[2] ~= '' then
	redis.call('DEL', ARGV[1] .. ARGV[2])
	redis.call('ZREM', KEYS[1], ARGV[2])
end
return #members
`)

// Delete implements certmagic.Storage: it deletes key and, if key is a
// directory, everything under it. A missing key is not an error.
func (s *RedisStorage) Delete(ctx context.Context, key string) error {
	key = cleanKey(key)
	lo, hi := below(key)
	if err := deleteScript.Run(ctx, s.client, []string{s.indexKey()}, s.dataKey(""), key, lo, hi).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis storage: delete %s: %w", key, err)
	}
	return nil
}

// Exists implements certmagic.Storage: true for a stored key and for a
// directory (a prefix of stored keys).
func (s *RedisStorage) Exists(ctx context.Context, key string) bool {
	key = cleanKey(key)
	if key != "" {
		if n, err := s.client.Exists(ctx, s.dataKey(key)).Result(); err != nil || n > 0 {
			return err == nil
		}
	}
	ok, err := s.hasChildren(ctx, key)
	return err == nil && ok
}

// List implements certmagic.Storage like FileStorage: the children of
// prefix (files and directories), or with recursive every file and
// directory below it, each as a full key, sorted. A missing prefix wraps
// fs.ErrNotExist; a file has no children.
func (s *RedisStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	prefix = cleanKey(prefix)
	lo, hi := below(prefix)
	members, err := s.client.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: lo, Max: hi}).Result()
	if err != nil {
		return nil, fmt.Errorf("redis storage: list %s: %w", prefix, err)
	}
	if len(members) == 0 {
		if prefix != "" {
			if n, err := s.client.Exists(ctx, s.dataKey(prefix)).Result(); err != nil {
				return nil, fmt.Errorf("redis storage: list %s: %w", prefix, err)
			} else if n > 0 {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("redis storage: list %s: %w", prefix, fs.ErrNotExist)
	}
	seen := map[string]bool{}
	for _, m := range members {
		rel := m
		if prefix != "" {
			rel = m[len(prefix)+1:]
		}
		parts := strings.Split(rel, "/")
		if !recursive {
			parts = parts[:1]
		}
		for i := range parts {
			seen[path.Join(prefix, strings.Join(parts[:i+1], "/"))] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// Stat implements certmagic.Storage. A directory has IsTerminal false and
// no Modified or Size.
func (s *RedisStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = cleanKey(key)
	var modified *redis.StringCmd
	var size *redis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		modified = p.HGet(ctx, s.dataKey(key), "modified")
		size = p.HStrLen(ctx, s.dataKey(key), "value")
		return nil
	})
	switch {
	case err == nil:
		ns, perr := modified.Int64()
		if perr != nil {
			return certmagic.KeyInfo{}, fmt.Errorf("redis storage: stat %s: modified: %w", key, perr)
		}
		return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, ns), Size: size.Val(), IsTerminal: true}, nil
	case !errors.Is(err, redis.Nil):
		return certmagic.KeyInfo{}, fmt.Errorf("redis storage: stat %s: %w", key, err)
	}
	dir, err := s.hasChildren(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("redis storage: stat %s: %w", key, err)
	}
	if !dir {
		return certmagic.KeyInfo{}, fmt.Errorf("redis storage: stat %s: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}
