// Package redis is pgha's catalog in Redis: the cluster record, its history,
// and the apply lock. One Catalog serves one cluster; its keys share a hash
// tag ({cluster}) so that they stay together on a Redis Cluster too.
package redis

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgha/pgha/state"
)

// Catalog is one cluster's keys in one Redis database.
type Catalog struct {
	client  *goredis.Client
	cluster string
	lockTTL time.Duration
	// password is what new connections AUTH with; open is set by Probe
	// when the server takes commands without one, so that a password is
	// never sent to a server that did not ask for it (and AUTH does not
	// fail there before the plan can secure it).
	password atomic.Pointer[string]
	open     atomic.Bool
}

// New connects lazily to addr. Timeouts are short and nothing is retried:
// an unreachable catalog is a fact to report, not something to wait for.
func New(addr, password string, db int, cluster string) *Catalog {
	return NewTLS(addr, password, db, cluster, nil)
}

// NewTLS is New over TLS: tlsFor is asked at every new connection and
// returns the configuration to use (nil: plain text), so that a catalog
// opened before its certificates existed uses them as soon as they do.
func NewTLS(addr, password string, db int, cluster string, tlsFor func() (*tls.Config, error)) *Catalog {
	quietOnce.Do(func() { goredis.SetLogger(quietLogger{}) })
	c := &Catalog{cluster: cluster, lockTTL: DefaultLockTTL}
	c.password.Store(&password)
	opts := &goredis.Options{
		Addr: addr, DB: db, CredentialsProvider: c.credentials,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		DialerRetries: 1, MaxRetries: -1, PoolSize: 4, DisableIdentity: true,
	}
	if tlsFor != nil {
		// Probe copies these options, dialer included: it speaks TLS too.
		opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg, err := tlsFor()
			if err != nil {
				return nil, err
			}
			conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
			if err != nil || cfg == nil {
				return conn, err
			}
			tc := tls.Client(conn, cfg)
			hctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				conn.Close()
				return nil, fmt.Errorf("TLS: %w", err)
			}
			return tc, nil
		}
	}
	c.client = goredis.NewClient(opts)
	return c
}

// ReloadTLS makes a running Redis read its certificate files again
// (setting any tls-* parameter reloads them all), after a renewal.
func (c *Catalog) ReloadTLS(ctx context.Context, certFile string) error {
	if err := c.client.ConfigSet(ctx, "tls-cert-file", certFile).Err(); err != nil {
		return fmt.Errorf("redis %s: reload TLS: %w", c.addr(), err)
	}
	return nil
}

func (c *Catalog) credentials() (string, string) {
	if c.open.Load() {
		return "", ""
	}
	return "", *c.password.Load()
}

// SetPassword changes the password new connections AUTH with (the managed
// Redis was restarted with one, which closed the old connections).
func (c *Catalog) SetPassword(password string) {
	c.password.Store(&password)
	c.open.Store(false)
}

// Probe asks the server, on a connection of its own that sends no
// password, whether it takes commands from anyone: open is true when
// PING is answered without AUTH (no requirepass). The answer steers the
// client (see Catalog.open) and is reported by Observe's callers.
func (c *Catalog) Probe(ctx context.Context) (open bool, err error) {
	o := *c.client.Options()
	o.Password, o.CredentialsProvider, o.CredentialsProviderContext = "", nil, nil
	o.PoolSize = 1
	p := goredis.NewClient(&o)
	defer p.Close()
	err = p.Ping(ctx).Err()
	switch {
	case err == nil:
		c.open.Store(true)
		return true, nil
	case isAuthRequired(err):
		c.open.Store(false)
		return false, nil
	}
	return false, fmt.Errorf("redis %s: %w", c.addr(), err)
}

// isAuthRequired: the server refuses commands before AUTH (requirepass),
// or protected mode refuses this client.
func isAuthRequired(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "NOAUTH") || strings.HasPrefix(s, "DENIED")
}

// quietLogger drops go-redis's own log lines ("failed to dial after N
// attempts"): every failure already reaches the caller as an error, and a
// CLI must not print it twice on stderr.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// addr is the catalog's address for error messages (never the password).
func (c *Catalog) addr() string { return c.client.Options().Addr }

// Close releases the connection pool.
func (c *Catalog) Close() error { return c.client.Close() }

// SetLockTTL changes the lease length of later Acquires (tests use short
// ones); call it before Acquire, not concurrently with it.
func (c *Catalog) SetLockTTL(d time.Duration) { c.lockTTL = d }

func (c *Catalog) key(name string) string { return "pgha:{" + c.cluster + "}:" + name }

// Ping checks that the catalog answers (probing first whether it wants a
// password).
func (c *Catalog) Ping(ctx context.Context) error {
	if _, err := c.Probe(ctx); err != nil {
		return err
	}
	if err := c.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", c.addr(), err)
	}
	return nil
}

// Observe reads the record and the lock in one round trip (MGET); either is
// nil when absent. reachable=false with err means Redis did not answer;
// reachable=true with err means a stored value could not be decoded.
func (c *Catalog) Observe(ctx context.Context) (reachable bool, rec *state.ClusterRecord, lock *state.Lock, err error) {
	vals, err := c.client.MGet(ctx, c.key("record"), c.key("lock")).Result()
	if err != nil {
		return false, nil, nil, fmt.Errorf("redis %s: %w", c.addr(), err)
	}
	if s, ok := vals[0].(string); ok {
		rec = &state.ClusterRecord{}
		if err := json.Unmarshal([]byte(s), rec); err != nil {
			return true, nil, nil, fmt.Errorf("decode cluster record %s: %w", c.key("record"), err)
		}
	}
	if s, ok := vals[1].(string); ok {
		lock = &state.Lock{}
		if err := json.Unmarshal([]byte(s), lock); err != nil {
			return true, rec, nil, fmt.Errorf("decode lock %s: %w", c.key("lock"), err)
		}
	}
	return true, rec, lock, nil
}

// PutRecord stores the cluster record unconditionally, as a write after
// rec (its revision one higher): what another writer does, in tests.
func (c *Catalog) PutRecord(ctx context.Context, rec state.ClusterRecord) error {
	rec.Revision++
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode cluster record: %w", err)
	}
	if err := c.client.Set(ctx, c.key("record"), b, 0).Err(); err != nil {
		return fmt.Errorf("store cluster record: %w", err)
	}
	return nil
}

// putRecordIfScript sets KEYS[1] to ARGV[1] only when the stored record's
// generation is ARGV[2] (0: no record stored) and its revision ARGV[3].
// It answers {1} when it wrote, {0, stored generation, exists, stored
// revision} when it did not. Reading and writing in one script is what
// makes the generation a fencing token: nothing can write between the
// comparison and the SET.
var putRecordIfScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
local gen, exists, rev = 0, 0, 0
if v then
  exists = 1
  local ok, rec = pcall(cjson.decode, v)
  if not ok or type(rec) ~= 'table' then
    return redis.error_reply('the stored cluster record is not JSON')
  end
  gen = tonumber(rec['generation']) or 0
  rev = tonumber(rec['revision']) or 0
end
if gen ~= tonumber(ARGV[2]) or (exists == 0 and tonumber(ARGV[2]) ~= 0) or rev ~= tonumber(ARGV[3]) then
  return {0, gen, exists, rev}
end
redis.call('SET', KEYS[1], ARGV[1])
return {1}`)

// PutRecordIf stores the cluster record only if the stored record's
// generation is still expect (0: there is no record, or one at generation
// 0, which pgha never writes) and its revision still rec.Revision (the
// record the writer read), atomically, with the revision one higher;
// otherwise nothing is written and the error is a *state.RecordMovedError.
// Every write of the record goes through it, so that a pgha acting on
// what it saw before another one changed the record (a watcher whose
// lease ran out mid-apply, a stale plan, a relax of the synchronous set
// between a read and a write) cannot overwrite the newer record.
func (c *Catalog) PutRecordIf(ctx context.Context, rec state.ClusterRecord, expect int64) error {
	read := rec.Revision
	rec.Revision = read + 1
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode cluster record: %w", err)
	}
	res, err := putRecordIfScript.Run(ctx, c.client, []string{c.key("record")}, b, expect, read).Int64Slice()
	if err != nil {
		return fmt.Errorf("store cluster record (if at generation %d) in redis %s: %w", expect, c.addr(), err)
	}
	if len(res) > 0 && res[0] == 1 {
		return nil
	}
	if len(res) != 4 {
		return fmt.Errorf("store cluster record: unexpected answer %v", res)
	}
	return &state.RecordMovedError{Store: "the catalog", Expected: expect, Stored: res[1], Absent: res[2] == 0, ReadRevision: read, StoredRevision: res[3]}
}

// DeleteCluster removes the record and history (the lock is released by its holder).
func (c *Catalog) DeleteCluster(ctx context.Context) error {
	if err := c.client.Del(ctx, c.key("record"), c.key("history")).Err(); err != nil {
		return fmt.Errorf("delete cluster record: %w", err)
	}
	return nil
}

// Event is one entry of the cluster's history: what pgha did and why.
type Event struct {
	Time       time.Time         `json:"time"`
	Kind       string            `json:"kind"`
	Message    string            `json:"message"`
	Generation int64             `json:"generation"`
	Details    map[string]string `json:"details,omitempty"`
}

// historyCap bounds the history list; old events fall off.
const historyCap = 1000

// AppendHistory records an event, keeping the newest historyCap. A nil
// Catalog (a file whose authority is etcd and that declares no Redis
// catalog) keeps no history and says nothing.
func (c *Catalog) AppendHistory(ctx context.Context, e Event) error {
	if c == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	pipe := c.client.TxPipeline()
	pipe.LPush(ctx, c.key("history"), b)
	pipe.LTrim(ctx, c.key("history"), 0, historyCap-1)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("append history: %w", err)
	}
	return nil
}

// History returns up to n events, newest first; n <= 0 returns them all
// (at most historyCap).
func (c *Catalog) History(ctx context.Context, n int) ([]Event, error) {
	stop := int64(n) - 1
	if n <= 0 {
		stop = -1
	}
	vals, err := c.client.LRange(ctx, c.key("history"), 0, stop).Result()
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	out := make([]Event, 0, len(vals))
	for _, v := range vals {
		var e Event
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return nil, fmt.Errorf("decode event: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// PutBackup stores a backup's record and indexes it by time.
func (c *Catalog) PutBackup(ctx context.Context, b state.Backup) error {
	js, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode backup %s: %w", b.ID, err)
	}
	pipe := c.client.TxPipeline()
	pipe.Set(ctx, c.key("backup:"+b.ID), js, 0)
	pipe.ZAdd(ctx, c.key("backups"), goredis.Z{Score: float64(b.Started.UnixNano()), Member: b.ID})
	if b.Root != "" {
		pipe.ZAdd(ctx, c.key("chain:"+b.Root), goredis.Z{Score: float64(b.Started.UnixNano()), Member: b.ID})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record backup %s: %w", b.ID, err)
	}
	return nil
}

// ErrNoBackup means the catalog holds no record of a backup.
var ErrNoBackup = errors.New("the catalog holds no record of this backup")

// RecordVerify writes the result of a verify on a backup's record,
// changing nothing else: an optimistic transaction (WATCH), so that a
// record another process rewrites meanwhile (an expiry) is read again
// rather than overwritten with what it said before.
func (c *Catalog) RecordVerify(ctx context.Context, id string, at time.Time, result, mode string, took time.Duration) (state.Backup, error) {
	key := c.key("backup:" + id)
	var b state.Backup
	txf := func(tx *goredis.Tx) error {
		js, err := tx.Get(ctx, key).Result()
		if isNil(err) {
			return fmt.Errorf("backup %s: %w", id, ErrNoBackup)
		}
		if err != nil {
			return err
		}
		b = state.Backup{}
		if err := json.Unmarshal([]byte(js), &b); err != nil {
			return fmt.Errorf("decode backup %s: %w", id, err)
		}
		b.VerifiedAt, b.Verify, b.VerifyMode, b.VerifySeconds = at.UTC(), result, mode, took.Seconds()
		out, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encode backup %s: %w", id, err)
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, key, out, 0)
			return nil
		})
		return err
	}
	for range 5 {
		err := c.client.Watch(ctx, txf, key)
		if errors.Is(err, goredis.TxFailedErr) {
			continue // the record changed under us: read it again
		}
		if err != nil {
			return b, fmt.Errorf("record the verify of backup %s: %w", id, err)
		}
		return b, nil
	}
	return b, fmt.Errorf("record the verify of backup %s: its record kept changing", id)
}

// Chain lists the IDs of the backups whose chain starts at the full root,
// oldest first: what a restore of the chain's newest backup reads.
func (c *Catalog) Chain(ctx context.Context, root string) ([]string, error) {
	ids, err := c.client.ZRange(ctx, c.key("chain:"+root), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list chain %s: %w", root, err)
	}
	return ids, nil
}

// Backups lists the recorded backups, newest first.
func (c *Catalog) Backups(ctx context.Context) ([]state.Backup, error) {
	ids, err := c.client.ZRevRange(ctx, c.key("backups"), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = c.key("backup:" + id)
	}
	vals, err := c.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("read backups: %w", err)
	}
	out := make([]state.Backup, 0, len(vals))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // indexed but gone: the next plan repairs the index
		}
		var b state.Backup
		if err := json.Unmarshal([]byte(s), &b); err != nil {
			return nil, fmt.Errorf("decode backup %s: %w", ids[i], err)
		}
		out = append(out, b)
	}
	return out, nil
}
