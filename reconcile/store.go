package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// Store is what pgha's authority rests on: the cluster lock, the
// watchers' leader lease and the cluster record. Redis implements it
// today; etcd (a catalog beyond one host) is planned and needs only these
// operations. Backups stay in the Redis catalog, which is not part of the
// authority.
type Store interface {
	// Acquire takes the cluster lock; see LockOptions. A lock held by a
	// live holder is a *HeldError matching ErrLockBusy.
	Acquire(ctx context.Context, info state.Lock, o LockOptions) (Lease, error)
	// AcquireLeader makes the caller the leader of the watchers, apart
	// from the cluster lock: one try, no wait. A lease held by another
	// live watcher is a *HeldError matching ErrLeaderHeld and naming it;
	// a watcher on this host whose process is gone is replaced at once,
	// one elsewhere when its lease (ttl; <= 0: the default) runs out. The
	// lease is renewed for as long as ctx lives, and Lost closes when it
	// can no longer be counted on: the leader must stop acting then.
	AcquireLeader(ctx context.Context, info state.Lock, ttl time.Duration) (Lease, error)
	// ForceUnlock removes the lock only when its ID is id.
	ForceUnlock(ctx context.Context, id string) error
	// Observe reads the record and the lock holder (nil when absent).
	Observe(ctx context.Context) (reachable bool, rec *state.ClusterRecord, lock *state.Lock, err error)
	// PutRecordIf writes the record only if the stored one is still at
	// generation expect (0: there is none), atomically: the generation is
	// the fencing token of role changes. Otherwise nothing is written and
	// the error is a *GenerationMovedError matching ErrGenerationMoved.
	PutRecordIf(ctx context.Context, rec state.ClusterRecord, expect int64) error
	DeleteCluster(ctx context.Context) error
}

// MemberStore is the part of the authority that node agents use to fence
// themselves (issue 14): each node's agent, on the node's own host, holds
// a member lease under its node name. An agent whose lease is Lost (it
// could not renew it: the authority is away or unreachable from its host)
// must stop its primary before the store can expire that lease, so that a
// watcher that sees the member gone may promote another node without two
// primaries ever acknowledging writes. Stores that can carry member
// leases (etcd, Redis) implement it; callers type-assert a Store.
type MemberStore interface {
	// HoldMember takes node's member lease for the agent described by info,
	// renewed for as long as ctx lives. ttl is how long the store keeps it
	// after the last renewal it acknowledged; Lost closes no later than ttl
	// after the send time of the last acknowledged renewal minus the
	// agent's fencing margin (the agent acts on Lost). A lease held by
	// another live agent is a *HeldError matching ErrLeaderHeld.
	HoldMember(ctx context.Context, node string, info state.Lock, ttl time.Duration) (Lease, error)
	// Members lists the nodes whose member leases are held now, with each
	// holder, as the store sees them (an expired lease is absent).
	Members(ctx context.Context) (map[string]state.Lock, error)
}

// LockOptions steer Store.Acquire.
type LockOptions struct {
	Timeout time.Duration          // keep trying this long; 0 = one try
	OnWait  func(*state.Lock)      // called once when the wait becomes noticeable
	Gone    func(*state.Lock) bool // a holder known dead is taken over at once
}

// Lease is a held lock. Lost is closed when it can no longer be counted
// on (expired, broken by force-unlock, the store away for a whole lease):
// whoever holds it must stop mutating.
type Lease interface {
	Unlocker
	Lost() <-chan struct{}
	// Verify checks that the lock is still this lease's (one read); when
	// it is not, the lease is lost and Lost closes.
	Verify(ctx context.Context) error
	// TookOver names the dead holder this lease replaced, or nil.
	TookOver() *state.Lock
}

var (
	// ErrLockBusy: the cluster lock is held by someone else (a `pgha
	// apply`, another watcher's apply) who is alive as far as pgha can
	// tell. A watcher that meets it observes and tries again later.
	ErrLockBusy = errors.New("the cluster lock is held by another process")
	// ErrLeaderHeld: another watcher is the leader; this one observes.
	ErrLeaderHeld = errors.New("the leader lease is held by another watcher")
	// ErrGenerationMoved: the cluster record is no longer at the
	// generation a writer expected (another pgha changed the cluster),
	// so nothing was written.
	ErrGenerationMoved = state.ErrRecordMoved
)

// HeldError says that the cluster lock or the leader lease is held, and
// by whom. It matches ErrLockBusy or ErrLeaderHeld with errors.Is.
type HeldError struct {
	Holder *state.Lock // nil when the store could not say (a file lock)
	kind   error       // ErrLockBusy or ErrLeaderHeld
	err    error       // the store's own error, which names the holder
}

func (e *HeldError) Error() string   { return e.err.Error() }
func (e *HeldError) Unwrap() []error { return []error{e.kind, e.err} }

// GenerationMovedError names the generation a writer expected and the one
// the store holds. It matches ErrGenerationMoved with errors.Is.
type GenerationMovedError struct {
	Expected, Stored int64
	err              error // the store's own error
}

func (e *GenerationMovedError) Error() string   { return e.err.Error() }
func (e *GenerationMovedError) Unwrap() []error { return []error{ErrGenerationMoved, e.err} }

// redisStore adapts the Redis catalog to Store, turning its errors into
// the Store's, so that callers do not depend on which store answers.
type redisStore struct{ *redis.Catalog }

func (r redisStore) Acquire(ctx context.Context, info state.Lock, o LockOptions) (Lease, error) {
	l, err := r.Catalog.Acquire(ctx, info, redis.AcquireOptions{Timeout: o.Timeout, OnWait: o.OnWait, Gone: o.Gone})
	if err != nil {
		var le *redis.LockedError
		if errors.As(err, &le) {
			return nil, &HeldError{Holder: le.Holder, kind: ErrLockBusy, err: err}
		}
		return nil, err
	}
	return l, nil
}

func (r redisStore) AcquireLeader(ctx context.Context, info state.Lock, ttl time.Duration) (Lease, error) {
	l, err := r.Catalog.AcquireLeader(ctx, info, ttl, holderGone)
	if err != nil {
		var he *redis.LeaderHeldError
		if errors.As(err, &he) {
			return nil, &HeldError{Holder: he.Holder, kind: ErrLeaderHeld, err: err}
		}
		return nil, err
	}
	return l, nil
}

func (r redisStore) PutRecordIf(ctx context.Context, rec state.ClusterRecord, expect int64) error {
	return recordMoved(r.Catalog.PutRecordIf(ctx, rec, expect))
}

// recordMoved gives a store's *state.RecordMovedError the Store's type,
// which plan-level checks (an intent, a fence) return too.
func recordMoved(err error) error {
	var ge *state.RecordMovedError
	if errors.As(err, &ge) {
		return &GenerationMovedError{Expected: ge.Expected, Stored: ge.Stored, err: err}
	}
	return err
}

// AcquireLeader makes this process the leader of the cluster's watchers
// (see Store.AcquireLeader); info is LockInfo("watch") or the like.
// ErrNoCatalog when the file declares no catalog: without one there is
// nothing the watchers could agree in.
func (e *Env) AcquireLeader(ctx context.Context, info state.Lock, ttl time.Duration) (Lease, error) {
	if e.store == nil {
		return nil, ErrNoCatalog
	}
	l, err := e.store.AcquireLeader(ctx, info, ttl)
	if err != nil {
		return nil, fmt.Errorf("become the watchers' leader: %w", err)
	}
	return l, nil
}

// HoldMember takes node's member lease in Redis (see MemberStore); an
// agent of this host whose process is gone is replaced at once.
func (r redisStore) HoldMember(ctx context.Context, node string, info state.Lock, ttl time.Duration) (Lease, error) {
	l, err := r.Catalog.HoldMember(ctx, node, info, ttl, holderGone)
	if err != nil {
		var he *redis.MemberHeldError
		if errors.As(err, &he) {
			return nil, &HeldError{Holder: he.Holder, kind: ErrLeaderHeld, err: err}
		}
		return nil, err
	}
	return l, nil
}

// Members lists the held member leases (see MemberStore).
func (r redisStore) Members(ctx context.Context) (map[string]state.Lock, error) {
	return r.Catalog.Members(ctx)
}

// Members is the store's MemberStore, nil when the file declares no
// catalog or the store carries no member leases.
func (e *Env) Members() MemberStore {
	m, _ := e.store.(MemberStore)
	return m
}
