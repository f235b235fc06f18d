package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgha/pgha/state"
)

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
// identified by the lock ID inside the stored JSON.
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
)

// Lease is a held lock, renewed in the background until Release.
type Lease struct {
	c    *Catalog
	id   string
	stop chan struct{}
	done chan struct{}
	lost chan struct{}
	once sync.Once
}

// Acquire takes the cluster lock, retrying every 100 ms until timeout
// (0 = one try). onWait, if set, is told once, after a quiet 400 ms, who
// holds the lock.
func (c *Catalog) Acquire(ctx context.Context, info state.Lock, timeout time.Duration, onWait func(holder *state.Lock)) (*Lease, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode lock: %w", err)
	}
	start := time.Now()
	waited := false
	for {
		ok, err := c.client.SetNX(ctx, c.key("lock"), b, c.lockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("take lock in redis %s: %w", c.client.Options().Addr, err)
		}
		if ok {
			return c.lease(info.ID), nil
		}
		holder, _ := c.holder(ctx)
		elapsed := time.Since(start)
		if elapsed >= timeout {
			return nil, &LockedError{Holder: holder}
		}
		if !waited && elapsed >= 400*time.Millisecond && onWait != nil {
			waited = true
			onWait(holder)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Catalog) holder(ctx context.Context) (*state.Lock, error) {
	s, err := c.client.Get(ctx, c.key("lock")).Result()
	if err != nil {
		return nil, err
	}
	var l state.Lock
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

func (c *Catalog) lease(id string) *Lease {
	l := &Lease{c: c, id: id, stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{})}
	go l.renew()
	return l
}

// renew extends the lease every ttl/3 until Release, or until the lease is
// found to belong to someone else (force-unlocked), which closes Lost.
func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.c.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.c.lockTTL/3)
			n, err := renewScript.Run(ctx, l.c.client, []string{l.c.key("lock")}, l.id, l.c.lockTTL.Milliseconds()).Int()
			cancel()
			if err == nil && n == 0 {
				close(l.lost)
				return
			}
		}
	}
}

// Lost is closed when the lease was taken away (force-unlock or expiry).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// ID is the lock ID of this lease.
func (l *Lease) ID() string { return l.id }

// Release stops renewing and deletes the lock if it is still ours.
func (l *Lease) Release(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		err = releaseScript.Run(ctx, l.c.client, []string{l.c.key("lock")}, l.id).Err()
		if isNil(err) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("release lock %s: %w", l.id, err)
		}
	})
	return err
}

// ForceUnlock deletes the lock only when its ID is id, so that an operator
// cannot break a lock other than the one the error message named.
func (c *Catalog) ForceUnlock(ctx context.Context, id string) error {
	n, err := releaseScript.Run(ctx, c.client, []string{c.key("lock")}, id).Int()
	if err != nil && !isNil(err) {
		return fmt.Errorf("force-unlock: %w", err)
	}
	switch n {
	case 0:
		return fmt.Errorf("force-unlock: the cluster is not locked")
	case -1:
		h, _ := c.holder(ctx)
		if h != nil {
			return fmt.Errorf("force-unlock: the lock is held by %s, not by %s; nothing was removed", h, id)
		}
		return fmt.Errorf("force-unlock: the lock is not %s; nothing was removed", id)
	}
	return nil
}
