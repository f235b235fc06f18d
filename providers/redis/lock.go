package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgha/pgha/state"
)

// DefaultLockTTL is how long a lease lives without renewal: long enough to
// ride out a slow Redis (it is renewed every third of it), short enough
// that an apply that crashed on another host blocks the next one for less
// than 10 s. A holder gone on the same host is taken over at once.
const DefaultLockTTL = 9 * time.Second

// lockQuietPeriod is how long Acquire waits before telling the user it is
// waiting (Terraform's habit: most locks are free within a moment).
const lockQuietPeriod = 400 * time.Millisecond

// lockRetryInterval is how often Acquire tries again while the lock is held.
const lockRetryInterval = 100 * time.Millisecond

// LockedError says who holds the cluster lock and how to break it.
type LockedError struct{ Holder *state.Lock }

func (e *LockedError) Error() string {
	if e.Holder == nil {
		return "the cluster lock is held by another process"
	}
	return fmt.Sprintf("the cluster lock is held by %s; wait for it to finish, or if that process is gone run `pgha force-unlock %s`",
		e.Holder, e.Holder.ID)
}

// Compare-and-set scripts: a lease is only renewed or deleted by its owner,
// identified by the lock ID inside the stored JSON. Reading and writing in
// one script makes the check and the change atomic.
var (
	renewScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v)['id'] ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])`)
	releaseScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v)['id'] ~= ARGV[1] then return -1 end
return redis.call('DEL', KEYS[1])`)
	takeoverScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v)['id'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)
)

// Lease is a held cluster lock or leader lease. A goroutine renews it
// every ttl/3 until Release or until the context given to Acquire ends;
// Lost tells when it can no longer be counted on.
type Lease struct {
	c    *Catalog
	key  string // the Redis key: the cluster lock's or the leader's
	what string // "the cluster lock" or "the leader lease", for errors
	id   string
	ttl  time.Duration
	// expiry closes lost when no renewal came through before the key
	// may have expired in Redis (see renew).
	expiry *time.Timer
	stop   chan struct{} // closed by Release
	done   chan struct{} // closed when the renewer has returned
	lost   chan struct{} // closed when the lease is lost (renewer, or Verify)
	once   sync.Once
	// lostOnce closes lost once, whoever finds the lease gone first.
	lostOnce sync.Once
	// tookOver is the holder whose lock this lease replaced, if any.
	tookOver *state.Lock
}

// AcquireOptions steer Acquire.
type AcquireOptions struct {
	// Timeout is how long to keep trying (every 100 ms); 0 = one try.
	Timeout time.Duration
	// OnWait, if set, is called once with the holder when the lock was not
	// got within the first 400 ms, so that a CLI can say why it waits.
	OnWait func(holder *state.Lock)
	// Gone, if set, says whether a holder is certainly dead (its process
	// on this very host has exited). Its lock is taken over at once rather
	// than waited out; the lease then names it in TookOver.
	Gone func(holder *state.Lock) bool
}

// Acquire takes the cluster lock, trying again until o.Timeout; when it
// stays taken, the error is a *LockedError naming the holder. A holder
// o.Gone declares dead is replaced atomically (compare-and-set on its ID,
// so that two waiters cannot both take it over).
//
// The lease is renewed in the background for as long as ctx lives: pass the
// context of the whole locked operation, not a short one for the wait.
func (c *Catalog) Acquire(ctx context.Context, info state.Lock, o AcquireOptions) (*Lease, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode lock: %w", err)
	}
	ttl := c.lockTTL
	start := time.Now()
	waited := false
	for {
		sent := time.Now()
		ok, err := c.client.SetNX(ctx, c.key("lock"), b, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("take the cluster lock in redis %s: %w", c.addr(), err)
		}
		if ok {
			return c.lease(ctx, c.key("lock"), "the cluster lock", info.ID, ttl, sent), nil
		}
		holder, err := c.holderAt(ctx, c.key("lock"))
		if err != nil {
			return nil, fmt.Errorf("read the cluster lock in redis %s: %w", c.addr(), err)
		}
		if holder == nil {
			continue // it expired or was released between SETNX and GET: try at once
		}
		if o.Gone != nil && o.Gone(holder) {
			sent := time.Now()
			n, err := takeoverScript.Run(ctx, c.client, []string{c.key("lock")}, holder.ID, b, ttl.Milliseconds()).Int()
			if err != nil {
				return nil, fmt.Errorf("take over the cluster lock of %s: %w", holder, err)
			}
			if n == 1 {
				l := c.lease(ctx, c.key("lock"), "the cluster lock", info.ID, ttl, sent)
				l.tookOver = holder
				return l, nil
			}
			continue // released or taken meanwhile: look again
		}
		elapsed := time.Since(start)
		if elapsed >= o.Timeout {
			return nil, &LockedError{Holder: holder}
		}
		if !waited && elapsed >= lockQuietPeriod && o.OnWait != nil {
			waited = true
			o.OnWait(holder)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the cluster lock (held by %s): %w", holder, ctx.Err())
		case <-time.After(lockRetryInterval):
		}
	}
}

// holder reads the current cluster lock; nil, nil when nothing is locked.
func (c *Catalog) holder(ctx context.Context) (*state.Lock, error) {
	return c.holderAt(ctx, c.key("lock"))
}

// holderAt reads the holder stored at a lock or leader key; nil, nil when
// it is free.
func (c *Catalog) holderAt(ctx context.Context, key string) (*state.Lock, error) {
	s, err := c.client.Get(ctx, key).Result()
	if isNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l state.Lock
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decode lock %s: %w", key, err)
	}
	return &l, nil
}

// expiryMargin is how long before the key may expire in Redis a lease
// whose renewals failed is declared lost: its holder must stop before
// anyone else can take the key, and it needs a moment to do so.
func expiryMargin(ttl time.Duration) time.Duration { return ttl / 10 }

// lease starts the renewer of a key set (or renewed) by a command sent
// at sent: Redis keeps it at least until sent+ttl.
func (c *Catalog) lease(ctx context.Context, key, what, id string, ttl time.Duration, sent time.Time) *Lease {
	l := &Lease{c: c, key: key, what: what, id: id, ttl: ttl,
		stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{})}
	l.expiry = time.AfterFunc(time.Until(sent.Add(ttl))-expiryMargin(ttl), l.markLost)
	go l.renew(ctx)
	return l
}

// renew extends the lease every ttl/3. It returns when Release closes stop
// (the only ending that leaves Lost open), when ctx ends, when the key is
// found to belong to someone else (force-unlocked, or expired and taken),
// or when the lease is lost because no renewal came through in time.
//
// The time a lease is good for is counted from when the last successful
// renewal was sent, not from its answer: Redis counts its TTL from when it
// ran the command, which is later, so the holder always gives up first.
// The expiry timer fires on its own, so that a renewal stuck in a slow
// network does not delay Lost; a whole lease without an answer means the
// key may be gone and someone else may hold it.
func (l *Lease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.expiry.Stop()
			return
		case <-ctx.Done():
			l.markLost()
			return
		case <-l.lost:
			return // expired, or Verify found it gone
		case <-t.C:
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
		n, err := renewScript.Run(rctx, l.c.client, []string{l.key}, l.id, l.ttl.Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && n == 1:
			// A lost lease stays lost: the timer may have fired while
			// the answer was on its way.
			l.expiry.Reset(time.Until(sent.Add(l.ttl)) - expiryMargin(l.ttl))
		case err == nil: // the key is gone or someone else's
			l.markLost()
			return
		}
	}
}

func (l *Lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// ErrLeaseLost says the lock (or leader lease) is no longer this lease's.
var ErrLeaseLost = errors.New("the lock is no longer held by this lease")

// Verify checks, with one read, that the lock is still this lease's; when
// it is not (force-unlocked, expired and taken), the lease is lost from
// now on. A catalog that does not answer is no verdict: the renewer
// declares the lease lost once that lasts a whole TTL. Callers verify
// between steps, so that a broken lock stops them at the next one rather
// than at the next renewal.
func (l *Lease) Verify(ctx context.Context) error {
	select {
	case <-l.lost:
		return ErrLeaseLost
	default:
	}
	h, err := l.c.holderAt(ctx, l.key)
	if err != nil {
		return nil
	}
	if h == nil || h.ID != l.id {
		l.markLost()
		return ErrLeaseLost
	}
	return nil
}

// Lost is closed when the lease can no longer be counted on: the lock was
// force-unlocked or expired, renewals failed for a whole TTL, or the
// Acquire context ended. A locked operation should stop its mutations.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// TookOver is the holder whose lock Acquire replaced because Gone said it
// was dead; nil when the lock was free.
func (l *Lease) TookOver() *state.Lock { return l.tookOver }

// ID is the lock ID of this lease.
func (l *Lease) ID() string { return l.id }

// Release stops the renewer and deletes the lock if it is still ours (a
// lost lease's Release leaves a new holder alone). Calling it again is a
// no-op that returns nil.
func (l *Lease) Release(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		err = releaseScript.Run(ctx, l.c.client, []string{l.key}, l.id).Err()
		if err != nil {
			err = fmt.Errorf("release %s %s: %w", l.what, l.id, err)
		}
	})
	return err
}

// ForceUnlock deletes the lock only when its ID is id, so that an operator
// cannot break a lock other than the one the error message named.
func (c *Catalog) ForceUnlock(ctx context.Context, id string) error {
	n, err := releaseScript.Run(ctx, c.client, []string{c.key("lock")}, id).Int()
	if err != nil {
		return fmt.Errorf("force-unlock %s: %w", id, err)
	}
	switch n {
	case 0:
		return fmt.Errorf("force-unlock %s: the cluster is not locked", id)
	case -1:
		if h, _ := c.holder(ctx); h != nil {
			return fmt.Errorf("force-unlock %s: the lock is held by %s; nothing was removed", id, h)
		}
		return fmt.Errorf("force-unlock %s: the lock has another ID; nothing was removed", id)
	}
	return nil
}

func isNil(err error) bool { return errors.Is(err, goredis.Nil) }
