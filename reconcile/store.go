package reconcile

import (
	"context"
	"time"

	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// Store is what pgha's authority rests on: the cluster lock and the
// cluster record. Redis implements it today; etcd (a catalog beyond one
// host) is planned and needs only these operations. Backups stay in the
// Redis catalog, which is not part of the authority.
type Store interface {
	// Acquire takes the cluster lock; see LockOptions.
	Acquire(ctx context.Context, info state.Lock, o LockOptions) (Lease, error)
	// ForceUnlock removes the lock only when its ID is id.
	ForceUnlock(ctx context.Context, id string) error
	// Observe reads the record and the lock holder (nil when absent).
	Observe(ctx context.Context) (reachable bool, rec *state.ClusterRecord, lock *state.Lock, err error)
	PutRecord(ctx context.Context, rec state.ClusterRecord) error
	DeleteCluster(ctx context.Context) error
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

// redisStore adapts the Redis catalog to Store.
type redisStore struct{ *redis.Catalog }

func (r redisStore) Acquire(ctx context.Context, info state.Lock, o LockOptions) (Lease, error) {
	l, err := r.Catalog.Acquire(ctx, info, redis.AcquireOptions{Timeout: o.Timeout, OnWait: o.OnWait, Gone: o.Gone})
	if err != nil {
		return nil, err
	}
	return l, nil
}
