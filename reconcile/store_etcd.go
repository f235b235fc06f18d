package reconcile

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/providers/etcd"
	"github.com/pgha/pgha/state"
)

// etcdStore adapts the etcd authority to Store and MemberStore, turning
// its errors into the Store's as redisStore does.
type etcdStore struct{ *etcd.Store }

var (
	_ Store       = etcdStore{}
	_ MemberStore = etcdStore{}
)

// openEtcd makes the store of authority "etcd" (connecting lazily).
func openEtcd(cfg *config.Cluster) (*etcd.Store, error) {
	a := cfg.Authority
	ec := etcd.Config{Endpoints: a.Endpoints, Username: a.Username, Password: a.Password.Reveal(), TTL: a.TTL}
	if a.CAFile != "" || a.CertFile != "" || hasHTTPS(a.Endpoints) {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if a.CAFile != "" {
			pem, err := os.ReadFile(a.CAFile)
			if err != nil {
				return nil, fmt.Errorf("authority \"etcd\": read ca_file: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("authority \"etcd\": ca_file %s holds no PEM certificate", a.CAFile)
			}
		}
		if a.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("authority \"etcd\": client certificate: %w", err)
			}
			t.Certificates = []tls.Certificate{cert}
		}
		ec.TLS = t
	}
	return etcd.New(ec, cfg.Name)
}

func hasHTTPS(eps []string) bool {
	for _, ep := range eps {
		if len(ep) > 8 && ep[:8] == "https://" {
			return true
		}
	}
	return false
}

func (s etcdStore) Acquire(ctx context.Context, info state.Lock, o LockOptions) (Lease, error) {
	l, err := s.Store.Acquire(ctx, info, o.Timeout, o.OnWait, o.Gone)
	if err != nil {
		var le *etcd.LockedError
		if errors.As(err, &le) {
			return nil, &HeldError{Holder: le.Holder, kind: ErrLockBusy, err: err}
		}
		return nil, err
	}
	return l, nil
}

func (s etcdStore) AcquireLeader(ctx context.Context, info state.Lock, ttl time.Duration) (Lease, error) {
	l, err := s.Store.AcquireLeader(ctx, info, ttl, holderGone)
	return leaseOrHeld(l, err)
}

func (s etcdStore) HoldMember(ctx context.Context, node string, info state.Lock, ttl time.Duration) (Lease, error) {
	l, err := s.Store.HoldMember(ctx, node, info, ttl, holderGone)
	return leaseOrHeld(l, err)
}

func leaseOrHeld(l *etcd.Lease, err error) (Lease, error) {
	if err != nil {
		var he *etcd.HeldError
		if errors.As(err, &he) {
			return nil, &HeldError{Holder: he.Holder, kind: ErrLeaderHeld, err: err}
		}
		return nil, err
	}
	return l, nil
}

func (s etcdStore) PutRecordIf(ctx context.Context, rec state.ClusterRecord, expect int64) error {
	return recordMoved(s.Store.PutRecordIf(ctx, rec, expect))
}

// observeAuthority reads the etcd authority: the record, the lock and the
// leader (into cat), and how many members answer.
func (e *Env) observeAuthority(ctx context.Context, cat *state.Catalog) *state.Authority {
	ctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
	defer cancel()
	out := &state.Authority{Kind: "etcd", Endpoints: e.Cfg.Authority.Endpoints}
	done := make(chan struct{})
	go func() {
		defer close(done)
		out.Answering, _ = e.etcd.Answering(ctx)
	}()
	ok, rec, lock, err := e.etcd.Observe(ctx)
	out.Reachable = ok
	cat.Record, cat.Lock = rec, lock
	if err != nil {
		out.Error = err.Error()
	}
	if ok {
		if l, err := e.etcd.Leader(ctx); err == nil {
			cat.Leader = l
		}
		if e.Cfg.Agent != nil {
			if held, err := e.etcd.Members(ctx); err == nil {
				cat.Members = held
			}
		}
	}
	<-done
	return out
}

// leaseWhy is why a lost lease was lost, when its store says.
func leaseWhy(l Lease) string {
	if w, ok := l.(interface{ Why() string }); ok && w.Why() != "" {
		return w.Why()
	}
	return "the lease was not renewed in time (catalog away, or taken over)"
}

// leaderTTL is the watchers' leader lease: the authority's ttl when the
// file sets one, else Redis's default.
func (e *Env) leaderTTL() time.Duration {
	if a := e.Cfg.Authority; a != nil && a.TTL > 0 {
		return a.TTL
	}
	return 0
}
