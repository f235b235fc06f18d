package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pgha/pgha/state"
)

// DefaultLeaderTTL is the leader lease of `pgha watch`: as long as the
// cluster lock's, so that a watcher that died on another host is replaced
// (and its interrupted work finished) as soon as an apply's would be.
const DefaultLeaderTTL = DefaultLockTTL

// ErrLeaderHeld says that another watcher holds the leader lease. The
// error AcquireLeader returns is a *LeaderHeldError that matches it.
var ErrLeaderHeld = errors.New("the leader lease is held by another watcher")

// LeaderHeldError names the watcher that holds the leader lease.
type LeaderHeldError struct{ Holder *state.Lock }

func (e *LeaderHeldError) Error() string {
	if e.Holder == nil {
		return ErrLeaderHeld.Error()
	}
	return fmt.Sprintf("the leader lease is held by %s: that watcher acts, this one observes", e.Holder)
}

// Is makes errors.Is(err, ErrLeaderHeld) true.
func (e *LeaderHeldError) Is(target error) bool { return target == ErrLeaderHeld }

// AcquireLeader makes this watcher the leader if no other live watcher
// is: one try, no wait (a watcher that is not leader observes and tries
// again at its next check). The lease lives under its own key, apart from
// the cluster lock: the leader takes the cluster lock for each apply like
// anyone else, so that `pgha apply` and the watcher still exclude each
// other, and a watcher stays leader between applies.
//
// A key that already holds info.ID is this watcher's own (a restart of its
// lease after a lost one) and is taken back; a holder gone (may be nil)
// declares dead is replaced at once, compare-and-set on its ID as for the
// cluster lock. Anyone else is a *LeaderHeldError naming the holder. ttl
// <= 0 means DefaultLeaderTTL. The lease is renewed in the background for
// as long as ctx lives, with the cluster lock's Lost and Verify semantics.
func (c *Catalog) AcquireLeader(ctx context.Context, info state.Lock, ttl time.Duration, gone func(*state.Lock) bool) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultLeaderTTL
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode leader: %w", err)
	}
	key := c.key("leader")
	// Three rounds at most: a key released or expired between SETNX and
	// GET is tried again, but a contended key does not keep this loop.
	for range 3 {
		sent := time.Now()
		ok, err := c.client.SetNX(ctx, key, b, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("take the leader lease in redis %s: %w", c.addr(), err)
		}
		if ok {
			return c.lease(ctx, key, "the leader lease", info.ID, ttl, sent), nil
		}
		holder, err := c.holderAt(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read the leader lease in redis %s: %w", c.addr(), err)
		}
		if holder == nil {
			continue
		}
		mine := holder.ID == info.ID
		if !mine && (gone == nil || !gone(holder)) {
			return nil, &LeaderHeldError{Holder: holder}
		}
		sent = time.Now()
		n, err := takeoverScript.Run(ctx, c.client, []string{key}, holder.ID, b, ttl.Milliseconds()).Int()
		if err != nil {
			return nil, fmt.Errorf("take over the leader lease of %s: %w", holder, err)
		}
		if n == 1 {
			l := c.lease(ctx, key, "the leader lease", info.ID, ttl, sent)
			if !mine {
				l.tookOver = holder
			}
			return l, nil
		}
	}
	h, _ := c.holderAt(ctx, key)
	return nil, &LeaderHeldError{Holder: h}
}

// Leader reads who holds the leader lease; nil, nil when nobody does.
func (c *Catalog) Leader(ctx context.Context) (*state.Lock, error) {
	h, err := c.holderAt(ctx, c.key("leader"))
	if err != nil {
		return nil, fmt.Errorf("read the leader lease in redis %s: %w", c.addr(), err)
	}
	return h, nil
}
