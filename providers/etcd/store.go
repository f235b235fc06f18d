// Package etcd is pgha's authority in etcd (issue 14): the cluster lock,
// the watchers' leader lease, the node agents' member leases and the
// cluster record, kept by a consensus store instead of one Redis. Keys
// live under /pgha/<cluster>/; leases are etcd leases renewed with
// keep-alives, and the record is written in a transaction that compares
// the stored revision (the fencing check of a role change).
//
// The backup catalog and the history are not here: they stay in Redis
// when the file declares one (they are not part of the authority, and a
// lost history entry fences nothing).
package etcd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/state"
)

// DefaultTTL is the lease of the cluster lock, the leader and the
// members when the file sets none: as Redis's (9 s), renewed every third.
const DefaultTTL = 9 * time.Second

// MinTTL is the shortest lease an etcd server grants with its default
// timings (1.5 election timeouts, rounded up to whole seconds): a shorter
// one is silently lengthened by the server, and a holder counting the
// shorter one would give up while the key still lived, which is safe but
// would make its Lost a lie. Options below it are refused.
const MinTTL = 2 * time.Second

// Config says how to reach the etcd cluster.
type Config struct {
	Endpoints          []string
	Username, Password string
	TLS                *tls.Config // nil: plain text
	// TTL of the cluster lock (Acquire); <= 0: DefaultTTL. The leader's
	// and the members' come with each call.
	TTL time.Duration
}

// Store is one cluster's keys in one etcd cluster.
type Store struct {
	client    *clientv3.Client
	cluster   string
	prefix    string
	endpoints []string
	lockTTL   time.Duration
	// keepers are one client per member, which keep-alives go through
	// in turn: the shared client balances over members, but may keep
	// sending to a paused one (its TCP connection looks fine) while a
	// lease runs out; a keep-alive that got no answer is sent next
	// through the following member.
	keepers []*clientv3.Client
}

// New connects lazily (the gRPC connection is made on first use): an
// unreachable etcd is a fact Observe reports, not an error here.
func New(cfg Config, cluster string) (*Store, error) {
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	c, err := clientv3.New(clientConfig(cfg, cfg.Endpoints))
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	st := &Store{client: c, cluster: cluster, prefix: "/pgha/" + cluster + "/", endpoints: cfg.Endpoints, lockTTL: ttl}
	// One client per member for the keep-alives (see Lease.renew).
	for _, ep := range cfg.Endpoints {
		k, err := clientv3.New(clientConfig(cfg, []string{ep}))
		if err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("etcd %s: %w", ep, err)
		}
		st.keepers = append(st.keepers, k)
	}
	return st, nil
}

// clientConfig connects to endpoints without waiting (no DialTimeout:
// the connection is made by the first request, within its context).
func clientConfig(cfg Config, endpoints []string) clientv3.Config {
	return clientv3.Config{
		Endpoints: endpoints,
		Username:  cfg.Username,
		Password:  cfg.Password,
		TLS:       cfg.TLS,
		// Its own logs would print on the CLI's stderr; every failure
		// reaches the caller as an error.
		Logger: zap.NewNop(),
	}
}

// requestTimeout bounds one request: with every member down the client
// would otherwise wait for a connection for as long as the caller's
// context lives (a CLI's has no deadline), and an authority that does
// not answer is a fact to report, as Redis's 1 s timeouts make it.
const requestTimeout = 3 * time.Second

// req is ctx for one request: a member with a leader, within
// requestTimeout.
func req(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), requestTimeout)
}

// Close releases the connections.
func (s *Store) Close() error {
	for _, k := range s.keepers {
		_ = k.Close()
	}
	return s.client.Close()
}

// SetLockTTL changes the cluster lock's lease for later Acquires (tests).
func (s *Store) SetLockTTL(d time.Duration) { s.lockTTL = d }

func (s *Store) key(name string) string { return s.prefix + name }

// where names the etcd cluster in errors (never a password).
func (s *Store) where() string { return "etcd " + strings.Join(s.endpoints, ",") }

// Members answering: how many of the configured endpoints answer a
// status request, for `pgha status` and the plan (each within ctx).
func (s *Store) Answering(ctx context.Context) (answering int, leader bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ep := range s.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.client.Status(ctx, ep)
			if err != nil {
				return
			}
			mu.Lock()
			answering++
			if st.Leader != 0 {
				leader = true
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return answering, leader
}

// Endpoints are the configured client URLs.
func (s *Store) Endpoints() []string { return s.endpoints }

// Every read and write asks for a member that has a leader
// (WithRequireLeader): one cut off from the majority answers at once
// that it has none, instead of holding the request until a timeout.

// Observe reads the record and the lock in one transaction (one
// linearizable round trip). reachable=false with err: etcd did not
// answer (or has no majority); reachable=true with err: a stored value
// could not be decoded.
func (s *Store) Observe(ctx context.Context) (reachable bool, rec *state.ClusterRecord, lock *state.Lock, err error) {
	ctx, cancel := req(ctx)
	defer cancel()
	resp, err := s.client.Txn(ctx).Then(clientv3.OpGet(s.key("record")), clientv3.OpGet(s.key("lock"))).Commit()
	if err != nil {
		return false, nil, nil, fmt.Errorf("%s: %w", s.where(), err)
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		rec = &state.ClusterRecord{}
		if err := json.Unmarshal(kvs[0].Value, rec); err != nil {
			return true, nil, nil, fmt.Errorf("decode cluster record %s: %w", s.key("record"), err)
		}
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		lock = &state.Lock{}
		if err := json.Unmarshal(kvs[0].Value, lock); err != nil {
			return true, rec, nil, fmt.Errorf("decode lock %s: %w", s.key("lock"), err)
		}
	}
	return true, rec, lock, nil
}

// Ping checks that etcd answers a linearizable read (it has a majority).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := req(ctx)
	defer cancel()
	if _, err := s.client.Get(ctx, s.key("record"), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("%s: %w", s.where(), err)
	}
	return nil
}

// PutRecordIf stores the record only if the stored one is still at
// generation expect (0: none stored) and at revision rec.Revision (the
// record the writer read; state.ClusterRecord.Revision), with the
// revision one higher. Both are read, then written in a transaction
// whose comparison is the etcd mod revision that read saw: nothing can
// come between (a write in between moves it and the transaction does
// nothing, and the next round sees that write's record revision).
func (s *Store) PutRecordIf(ctx context.Context, rec state.ClusterRecord, expect int64) error {
	read := rec.Revision
	rec.Revision = read + 1
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode cluster record: %w", err)
	}
	key := s.key("record")
	moved := func(gen, stored int64, exists bool) error {
		return &state.RecordMovedError{Store: "etcd", Expected: expect, Stored: gen, Absent: !exists, ReadRevision: read, StoredRevision: stored}
	}
	for range 3 {
		gen, stored, rev, exists, err := s.generation(ctx)
		if err != nil {
			return fmt.Errorf("store cluster record (if at generation %d): %w", expect, err)
		}
		if gen != expect || (!exists && expect != 0) || stored != read {
			return moved(gen, stored, exists)
		}
		cmp := clientv3.Compare(clientv3.ModRevision(key), "=", rev)
		if !exists {
			cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		}
		rctx, cancel := req(ctx)
		resp, err := s.client.Txn(rctx).If(cmp).Then(clientv3.OpPut(key, string(b))).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("store cluster record (if at generation %d) in %s: %w", expect, s.where(), err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	gen, stored, _, exists, err := s.generation(ctx)
	if err != nil {
		return fmt.Errorf("store cluster record (if at generation %d): %w", expect, err)
	}
	return moved(gen, stored, exists)
}

// generation reads the stored record's generation and revision
// (state.ClusterRecord's) and the etcd mod revision of its key.
func (s *Store) generation(ctx context.Context) (gen, revision, modRev int64, exists bool, err error) {
	ctx, cancel := req(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, s.key("record"))
	if err != nil {
		return 0, 0, 0, false, fmt.Errorf("read the cluster record in %s: %w", s.where(), err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, 0, false, nil
	}
	var r struct {
		Generation int64 `json:"generation"`
		Revision   int64 `json:"revision"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return 0, 0, 0, true, fmt.Errorf("the stored cluster record is not JSON: %w", err)
	}
	return r.Generation, r.Revision, resp.Kvs[0].ModRevision, true, nil
}

// DeleteCluster removes the record (the lock and leases go with their
// holders' leases).
func (s *Store) DeleteCluster(ctx context.Context) error {
	ctx, cancel := req(ctx)
	defer cancel()
	if _, err := s.client.Delete(ctx, s.key("record")); err != nil {
		return fmt.Errorf("delete cluster record in %s: %w", s.where(), err)
	}
	return nil
}

// holderAt reads the holder at key; nil when free. rev is the key's
// modification revision, the compare-and-set token of a takeover.
func (s *Store) holderAt(ctx context.Context, key string) (h *state.Lock, rev int64, lease clientv3.LeaseID, err error) {
	ctx, cancel := req(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, 0, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, 0, nil
	}
	kv := resp.Kvs[0]
	var l state.Lock
	if err := json.Unmarshal(kv.Value, &l); err != nil {
		return nil, 0, 0, fmt.Errorf("decode lock %s: %w", key, err)
	}
	return &l, kv.ModRevision, clientv3.LeaseID(kv.Lease), nil
}

// Leader reads who holds the leader lease; nil when nobody does.
func (s *Store) Leader(ctx context.Context) (*state.Lock, error) {
	h, _, _, err := s.holderAt(ctx, s.key("leader"))
	if err != nil {
		return nil, fmt.Errorf("read the leader lease in %s: %w", s.where(), err)
	}
	return h, nil
}

// Members lists the node agents whose member leases are held now (an
// expired lease's key is gone with it).
func (s *Store) Members(ctx context.Context) (map[string]state.Lock, error) {
	p := s.key("members/")
	ctx, cancel := req(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read the member leases in %s: %w", s.where(), err)
	}
	out := map[string]state.Lock{}
	for _, kv := range resp.Kvs {
		var l state.Lock
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			return nil, fmt.Errorf("decode member lease %s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), p)] = l
	}
	return out, nil
}

// isNotFound: the lease is unknown to etcd (expired or revoked).
func isNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound) || (err != nil && strings.Contains(err.Error(), "requested lease not found"))
}
