package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/state"
)

// lockQuietPeriod is how long Acquire waits before telling the user it is
// waiting; lockRetryInterval how often it tries again (as Redis's).
const (
	lockQuietPeriod   = 400 * time.Millisecond
	lockRetryInterval = 100 * time.Millisecond
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

// HeldError says that the leader lease or a node's member lease is held
// by another live process.
type HeldError struct {
	Holder *state.Lock
	What   string // "the leader lease", "the member lease of db1"
}

func (e *HeldError) Error() string {
	if e.Holder == nil {
		return e.What + " is held by another process"
	}
	return fmt.Sprintf("%s is held by %s: that process acts, this one observes", e.What, e.Holder)
}

// ErrLeaseLost says the lock (or lease) is no longer this lease's.
var ErrLeaseLost = errors.New("the lock is no longer held by this lease")

// expiryMargin is how long before etcd may expire a lease whose renewals
// went unanswered its holder declares it lost: the holder must stop
// before anyone else can take the key, and needs a moment to do so.
func expiryMargin(ttl time.Duration) time.Duration { return ttl / 10 }

// Lease is a held etcd lease with one key attached: the cluster lock, the
// leader lease or a member lease. A goroutine sends a keep-alive every
// ttl/3 until Release or the end of the context it was taken with.
type Lease struct {
	s      *Store
	key    string
	what   string
	id     string // the holder's lock ID
	lease  clientv3.LeaseID
	ttl    time.Duration
	margin time.Duration
	// expiry closes lost when no keep-alive was acknowledged before etcd
	// may have expired the lease (counted from the send time).
	expiry   *time.Timer
	stop     chan struct{}
	done     chan struct{}
	lost     chan struct{}
	once     sync.Once
	lostOnce sync.Once
	why      atomic.Pointer[string]
	tookOver *state.Lock
}

// tryTimeout is how long one keep-alive waits for its answer: a fifth of
// the ttl (at most 1 s), so that tries through every member fit in what
// is left of a lease after renewals began to fail.
func tryTimeout(ttl time.Duration) time.Duration { return min(ttl/5, time.Second) }

// ttlSeconds is what etcd is asked for: whole seconds, rounded up, so
// that the server keeps the key at least as long as the holder counts.
func ttlSeconds(ttl time.Duration) int64 { return int64((ttl + time.Second - 1) / time.Second) }

// Acquire takes the cluster lock, trying again every 100 ms until
// o.Timeout. A holder gone declares dead is replaced atomically
// (compare-and-set on its key's revision). Renewed for as long as ctx
// lives.
func (s *Store) Acquire(ctx context.Context, info state.Lock, timeout time.Duration, onWait func(*state.Lock), gone func(*state.Lock) bool) (*Lease, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode lock: %w", err)
	}
	key, ttl := s.key("lock"), s.lockTTL
	start := time.Now()
	waited := false
	for {
		l, holder, rev, err := s.tryTake(ctx, key, "the cluster lock", info.ID, b, ttl, expiryMargin(ttl), 0)
		if err != nil {
			return nil, fmt.Errorf("take the cluster lock in %s: %w", s.where(), err)
		}
		if l != nil {
			return l, nil
		}
		if holder != nil && gone != nil && gone(holder) {
			l, _, _, err := s.tryTake(ctx, key, "the cluster lock", info.ID, b, ttl, expiryMargin(ttl), rev)
			if err != nil {
				return nil, fmt.Errorf("take over the cluster lock of %s: %w", holder, err)
			}
			if l != nil {
				l.tookOver = holder
				return l, nil
			}
			continue // released or taken meanwhile: look again
		}
		if holder == nil {
			continue
		}
		elapsed := time.Since(start)
		if elapsed >= timeout {
			return nil, &LockedError{Holder: holder}
		}
		if !waited && elapsed >= lockQuietPeriod && onWait != nil {
			waited = true
			onWait(holder)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the cluster lock (held by %s): %w", holder, ctx.Err())
		case <-time.After(lockRetryInterval):
		}
	}
}

// AcquireLeader makes this watcher the leader if no other live one is:
// one try, no wait. A key holding info.ID is this watcher's own and is
// taken back; a holder gone declares dead is replaced at once. ttl <= 0:
// DefaultTTL.
func (s *Store) AcquireLeader(ctx context.Context, info state.Lock, ttl time.Duration, gone func(*state.Lock) bool) (*Lease, error) {
	return s.hold(ctx, s.key("leader"), "the leader lease", info, ttl, 0, gone)
}

// HoldMember takes node's member lease for the agent described by info
// (see reconcile.MemberStore): its Lost closes a tenth of the ttl before
// etcd may expire it, as Redis's member lease does, time for the agent to
// stop its primary before a watcher can see the member gone.
func (s *Store) HoldMember(ctx context.Context, node string, info state.Lock, ttl time.Duration, gone func(*state.Lock) bool) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return s.hold(ctx, s.key("members/"+node), "the member lease of "+node, info, ttl, expiryMargin(ttl), gone)
}

// hold is one try at a lease key that is not waited for (leader, member).
func (s *Store) hold(ctx context.Context, key, what string, info state.Lock, ttl, margin time.Duration, gone func(*state.Lock) bool) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if margin <= 0 {
		margin = expiryMargin(ttl)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode holder: %w", err)
	}
	// Three rounds at most: a key released between the try and the read
	// is tried again, a contended one does not keep this loop.
	for range 3 {
		l, holder, rev, err := s.tryTake(ctx, key, what, info.ID, b, ttl, margin, 0)
		if err != nil {
			return nil, fmt.Errorf("take %s in %s: %w", what, s.where(), err)
		}
		if l != nil {
			return l, nil
		}
		if holder == nil {
			continue
		}
		mine := holder.ID == info.ID
		if !mine && (gone == nil || !gone(holder)) {
			return nil, &HeldError{Holder: holder, What: what}
		}
		l, _, _, err = s.tryTake(ctx, key, what, info.ID, b, ttl, margin, rev)
		if err != nil {
			return nil, fmt.Errorf("take over %s of %s: %w", what, holder, err)
		}
		if l != nil {
			if !mine {
				l.tookOver = holder
			}
			return l, nil
		}
	}
	h, _, _, _ := s.holderAt(ctx, key)
	return nil, &HeldError{Holder: h, What: what}
}

// tryTake grants a lease and puts value at key under it, in one
// transaction that requires the key absent (rev 0) or still at revision
// rev (a takeover). When the key is someone else's, it returns its holder
// and revision and revokes the lease it granted.
func (s *Store) tryTake(ctx context.Context, key, what, id string, value []byte, ttl, margin time.Duration, rev int64) (*Lease, *state.Lock, int64, error) {
	sent := time.Now()
	gctx, cancel := req(ctx)
	g, err := s.client.Grant(gctx, ttlSeconds(ttl))
	cancel()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("grant a lease: %w", err)
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if rev != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	tctx, cancel := req(ctx)
	defer cancel()
	resp, err := s.client.Txn(tctx).If(cmp).
		Then(clientv3.OpPut(key, string(value), clientv3.WithLease(g.ID))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		s.revoke(g.ID)
		return nil, nil, 0, err
	}
	if resp.Succeeded {
		return s.start(ctx, key, what, id, g.ID, ttl, margin, sent), nil, 0, nil
	}
	s.revoke(g.ID)
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, nil, 0, nil
	}
	var h state.Lock
	if err := json.Unmarshal(kvs[0].Value, &h); err != nil {
		return nil, nil, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return nil, &h, kvs[0].ModRevision, nil
}

// revoke gives back a lease that holds nothing (best effort: it expires
// on its own).
func (s *Store) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = s.client.Revoke(ctx, id)
}

// start begins keeping a granted lease alive: etcd keeps it at least
// until sent+ttl.
func (s *Store) start(ctx context.Context, key, what, id string, lease clientv3.LeaseID, ttl, margin time.Duration, sent time.Time) *Lease {
	l := &Lease{s: s, key: key, what: what, id: id, lease: lease, ttl: ttl, margin: margin,
		stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{})}
	l.expiry = time.AfterFunc(time.Until(sent.Add(ttl))-margin, func() {
		l.markLost(fmt.Sprintf("no keep-alive of %s acknowledged by etcd within its ttl (%s)", what, ttl))
	})
	go l.renew(ctx)
	return l
}

// renew sends a keep-alive every ttl/4, through the next member at once
// after one that failed (each one request, so that its
// send time is known: etcd counts the lease from when its leader took
// the keep-alive, later than the send, so the holder gives up first).
// An answer that the lease is unknown (expired, revoked by a
// force-unlock) loses it at once; no answer loses it when the expiry
// timer fires, which a keep-alive stuck on a member without a majority
// cannot delay.
func (l *Lease) renew(ctx context.Context) {
	defer close(l.done)
	every := l.ttl / 4
	t := time.NewTimer(every)
	defer t.Stop()
	member := 0
	for {
		select {
		case <-l.stop:
			l.expiry.Stop()
			return
		case <-ctx.Done():
			l.markLost("its context ended")
			return
		case <-l.lost:
			return
		case <-t.C:
		}
		sent := time.Now()
		k := l.s.keepers[member%len(l.s.keepers)]
		rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), tryTimeout(l.ttl))
		resp, err := k.KeepAliveOnce(rctx, l.lease)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			l.expiry.Reset(time.Until(sent.Add(l.ttl)) - l.margin)
			t.Reset(every)
		case err == nil || isNotFound(err):
			l.markLost(fmt.Sprintf("etcd no longer holds %s (expired or revoked)", l.what))
			return
		default:
			// No answer (the member is paused, cut off, without a
			// leader, or an election is under way): at once through
			// the next member.
			member++
			t.Reset(50 * time.Millisecond)
		}
	}
}

func (l *Lease) markLost(why string) {
	l.lostOnce.Do(func() {
		l.why.Store(&why)
		close(l.lost)
	})
}

// Lost is closed when the lease can no longer be counted on.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Why says why the lease was lost ("" while it is held).
func (l *Lease) Why() string {
	if p := l.why.Load(); p != nil {
		return *p
	}
	return ""
}

// TookOver is the holder this lease replaced, or nil.
func (l *Lease) TookOver() *state.Lock { return l.tookOver }

// ID is the holder's lock ID.
func (l *Lease) ID() string { return l.id }

// Verify checks with one read that the key is still this lease's; an
// etcd that does not answer is no verdict (the expiry timer decides).
func (l *Lease) Verify(ctx context.Context) error {
	select {
	case <-l.lost:
		return ErrLeaseLost
	default:
	}
	h, _, lease, err := l.s.holderAt(ctx, l.key)
	if err != nil {
		return nil
	}
	if h == nil || h.ID != l.id || lease != l.lease {
		l.markLost(fmt.Sprintf("%s is no longer this process's in etcd", l.what))
		return ErrLeaseLost
	}
	return nil
}

// Release stops the keep-alives and revokes the lease, which deletes the
// key if it is still attached to it (a key taken over meanwhile is under
// another lease and stays). Calling it again is a no-op.
func (l *Lease) Release(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		rctx, cancel := req(ctx)
		defer cancel()
		if _, rerr := l.s.client.Revoke(rctx, l.lease); rerr != nil && !isNotFound(rerr) {
			err = fmt.Errorf("release %s %s: %w", l.what, l.id, rerr)
		}
	})
	return err
}

// ForceUnlock deletes the cluster lock only when its ID is id, and
// revokes its lease so that the holder's next keep-alive finds it gone.
func (s *Store) ForceUnlock(ctx context.Context, id string) error {
	key := s.key("lock")
	h, rev, lease, err := s.holderAt(ctx, key)
	if err != nil {
		return fmt.Errorf("force-unlock %s: %w", id, err)
	}
	if h == nil {
		return fmt.Errorf("force-unlock %s: the cluster is not locked", id)
	}
	if h.ID != id {
		return fmt.Errorf("force-unlock %s: the lock is held by %s; nothing was removed", id, h)
	}
	ctx, cancel := req(ctx)
	defer cancel()
	resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("force-unlock %s: %w", id, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("force-unlock %s: the lock changed meanwhile; nothing was removed", id)
	}
	if lease != 0 {
		_, _ = s.client.Revoke(ctx, lease)
	}
	return nil
}
