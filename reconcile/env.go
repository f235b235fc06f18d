// Package reconcile sequences side effects: it observes the cluster through
// the providers, asks the pure planner what to do, and executes the plan in
// order under the cluster lock.
package reconcile

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pki/certstore"
	"github.com/pgha/pgha/providers/etcd"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// ObserveTimeout bounds how long one node or the catalog may take to answer
// before it is recorded as unreachable.
const ObserveTimeout = 2 * time.Second

// Env is one cluster file bound to the providers that act on it.
type Env struct {
	Cfg     *config.Cluster
	Runtime Runtime
	Catalog *redis.Catalog // nil when the file declares no catalog
	// store holds the lock, the leader lease and the cluster record: the
	// etcd authority when the file declares one, else the catalog.
	store Store
	// etcd is the authority "etcd" (nil without one); backups and the
	// history stay in Catalog.
	etcd *etcd.Store
	// pg is how executors talk to the nodes' PostgreSQL servers (see
	// pgOps); nil means providers/postgres.
	pg pgOps
	// Actor names who acts in the catalog history ("pgha watch");
	// "" is a person's command.
	Actor string
	// Now is the clock backups are scheduled and named by; nil means
	// time.Now. Tests fix it to replay a week in minutes.
	Now func() time.Time

	// Trace, when set, is told each step of the slower executors as it
	// ends (the watcher's debug log: what a restart in place spends its
	// time on). nil: nothing is said.
	Trace func(step string)

	// installed keeps what each node had installed of TLS when last
	// read, for the watcher's quick observations (see observeTLS).
	installed *installedTLS

	// held is the lock of the running apply or destroy; catalog.destroy
	// releases it first, since the lock lives in what it removes.
	held Lease
	// events receives executors' notes during Execute, under action,
	// the ID of the running action.
	events Reporter
	action string
}

// Open prepares the providers for cfg. It connects to nothing yet.
func Open(cfg *config.Cluster) (*Env, error) {
	rt, err := OpenRuntime(cfg)
	if err != nil {
		return nil, err
	}
	e := &Env{Cfg: cfg, Runtime: rt, pg: postgresOps{}, installed: &installedTLS{}}
	if c := cfg.Catalog; c != nil {
		e.Catalog = redis.NewTLS(c.Address, c.Password.Reveal(), c.DB, cfg.Name, catalogTLS(cfg))
		e.store = redisStore{e.Catalog}
	}
	if cfg.Authority != nil {
		st, err := openEtcd(cfg)
		if err != nil {
			return nil, err
		}
		e.etcd, e.store = st, etcdStore{st}
	}
	return e, nil
}

// trace tells Trace, when set, that step ended.
func (e *Env) trace(step string) {
	if e.Trace != nil {
		e.Trace(step)
	}
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

// Close releases the catalog and runtime connections.
func (e *Env) Close() {
	if e.Catalog != nil {
		_ = e.Catalog.Close()
	}
	if e.etcd != nil {
		_ = e.etcd.Close()
	}
	e.Runtime.Close()
}

// Endpoint is how pgha reaches node as the superuser (the API's
// sentinel connections); false for a node the file does not declare.
func (e *Env) Endpoint(node string) (postgres.Endpoint, bool) {
	n := e.Cfg.Node(node)
	if n == nil {
		return postgres.Endpoint{}, false
	}
	return e.superuser(n), true
}

// superuser is how pgha talks to a node.
func (e *Env) superuser(n *config.Node) postgres.Endpoint {
	host, port := e.Cfg.AdminEndpoint(n)
	return postgres.Endpoint{Host: host, Port: port, User: e.Cfg.Postgres.Superuser, Password: e.Cfg.Postgres.Password.Reveal(),
		TLS: e.clientTLS(host), RequireTLS: e.requireTLS(n.Name), Name: n.Name}
}

// replicator is how pgha streams from n over the replication protocol
// (base backups, WAL): as the replication user, through the admin endpoint.
func (e *Env) replicator(n *config.Node) postgres.Endpoint {
	host, port := e.Cfg.AdminEndpoint(n)
	return postgres.Endpoint{Host: host, Port: port, User: e.Cfg.Replication.User, Password: e.Cfg.Replication.Password.Reveal(),
		TLS: e.clientTLS(host), RequireTLS: e.requireTLS(n.Name), Name: n.Name}
}

// clientTLS is pgha's side of TLS towards host: verify-full against the
// cluster CA, with pgha's client certificate. It is read from the store
// at each connection, so that the CA an apply creates is used by the
// rest of that apply. nil when the store has no CA yet.
//
// With TLS turned off in cluster.hcl, a store that holds a CA still
// serves: the nodes that had TLS take only TLS until the plan that turns
// it off has reloaded them (plain text is used once they refuse TLS).
func (e *Env) clientTLS(host string) *tls.Config {
	cfg, err := certstore.Store{Dir: e.Cfg.TLS.Dir}.ClientConfig(host)
	if err != nil && !e.Cfg.TLS.Enabled {
		return nil
	}
	if err != nil {
		// An unreadable store verifies nothing: a config whose roots
		// are empty makes every handshake fail with a clear error
		// rather than fall back to plain text.
		return &tls.Config{ServerName: host, RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	}
	return cfg
}

// ObserveOptions tune one observation.
type ObserveOptions struct {
	// Quick is the watcher's check, which must fit in a check interval and
	// which only decides whether to act: the runtime may skip what is slow
	// to find out and that neither the detector nor the decision needs.
	// On Docker a stopped container's volume is read through the engine's
	// archive API instead of a probe container (1.7-1.9 s here, enough to
	// push a crash's detection on Docker past its 3 s target), its
	// set-aside directories unlisted. What acts observes in full: Run
	// plans again under the cluster lock from its own observation.
	Quick bool
	// NoAside: set-aside data directories are not listed at all (on
	// Docker, an exec per running node). For the plans that cannot use
	// them: a restart in place, a failover.
	NoAside bool
}

// Observe takes a full snapshot of every node and the catalog,
// concurrently. Nothing unreachable is an error: it is a fact in the
// snapshot.
func (e *Env) Observe(ctx context.Context) *state.Cluster {
	return e.ObserveWith(ctx, ObserveOptions{})
}

// ObserveWith is Observe tuned by o.
func (e *Env) ObserveWith(ctx context.Context, o ObserveOptions) *state.Cluster {
	s := &state.Cluster{Name: e.Cfg.Name, ObservedAt: e.now()}
	for _, cn := range e.Cfg.Nodes {
		s.Nodes = append(s.Nodes, &state.Node{Name: cn.Name, Host: cn.Host, Port: cn.Port, DataDir: cn.DataDir})
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		timeout := e.nodeTimeout(o)
		e.Runtime.Observe(ctx, s, func(cn *config.Node, n *state.Node) {
			e.observePG(ctx, cn, n, timeout)
			if !o.Quick && !n.Reachable && timedOut(n.Error) && ctx.Err() == nil {
				// A one-shot command (plan, apply, status) asks a node that
				// timed out once more, with twice the time: a loaded server
				// answering in 3 s is not "running but does not answer", a
				// critical finding that stops the apply (make test: TestDocker
				// planned nothing for a work_mem edit, db1's query timing out
				// once beside other tests' containers). The watcher's quick
				// checks keep their short bound and count failures instead.
				e.observePG(ctx, cn, n, 2*ObserveTimeout)
			}
		}, o)
	}()
	var cat, auth state.Catalog
	if e.Catalog != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cat = e.observeCatalog(ctx)
		}()
	}
	if e.etcd != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Authority = e.observeAuthority(ctx, &auth)
		}()
	}
	if e.Cfg.Backup != nil {
		list, err := backup.Repository(e.Repo(), e.Cfg.Name)
		s.Backups = list
		if err != nil {
			s.BackupsError = err.Error()
		}
		if !o.Quick {
			s.Archive = backup.ObserveArchive(e.Repo(), e.Cfg.Name)
		}
	}
	wg.Wait()
	e.recordServing(s)
	e.observeTLS(ctx, s, o.Quick)
	// The runtime reported whether the managed catalog's files exist.
	cat.DirExists = s.Catalog.DirExists
	if s.Authority != nil {
		// The record, the lock and the leader are etcd's.
		cat.Record, cat.Lock, cat.Leader, cat.Members = auth.Record, auth.Lock, auth.Leader, auth.Members
		cat.Configured = true
	}
	s.Catalog = cat
	return s
}

// nodeTimeout bounds how long one node may take to answer in an
// observation. In the watcher's quick observation it is 3/4 of the check
// interval (at least 500 ms, at most ObserveTimeout): a paused or wedged
// server accepts the connection and then says nothing, and each check
// waiting the full 2 s for it stretched the three failed checks that
// declare a primary lost (1 s apart by default) to 8-9 s. A busy server
// answering later than that only fails one check, and the standbys,
// still hearing its WAL, keep that from becoming a failover.
func (e *Env) nodeTimeout(o ObserveOptions) time.Duration {
	if !o.Quick || e.Cfg.Failover.CheckInterval <= 0 {
		return ObserveTimeout
	}
	return min(ObserveTimeout, max(e.Cfg.Failover.CheckInterval*3/4, 500*time.Millisecond))
}

// timedOut says whether an observation error is a timeout (the server
// accepted or half-answered and then said nothing in time), not a refusal.
func timedOut(msg string) bool {
	return strings.Contains(msg, "context deadline exceeded") || strings.Contains(msg, "i/o timeout")
}

// observePG fills what PostgreSQL says about a node that may be running,
// within timeout.
func (e *Env) observePG(ctx context.Context, cn *config.Node, n *state.Node, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The verifier is compared on every node: after a failover role.ensure
	// acts on whichever node is primary (about 1 ms of PBKDF2 each).
	roles := map[string]string{e.Cfg.Replication.User: e.Cfg.Replication.Password.Reveal()}
	e.db().Observe(ctx, e.superuser(cn), n, roles)
}

func (e *Env) observeCatalog(ctx context.Context) state.Catalog {
	c := e.Cfg.Catalog
	out := state.Catalog{Configured: true, Address: c.Address, Managed: c.Managed}
	ctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
	defer cancel()
	// Whether it takes commands without a password, asked first: the
	// client then sends none to a server that wants none.
	if open, err := e.Catalog.Probe(ctx); err == nil {
		out.Open = open
	}
	// With an etcd authority, the record and the lock are not Redis's:
	// its own read only says whether Redis answers.
	ok, rec, lock, err := e.Catalog.Observe(ctx)
	out.Reachable = ok
	if e.etcd == nil {
		out.Record, out.Lock = rec, lock
	}
	if err != nil {
		out.Error = err.Error()
	}
	// Who acts on its own is part of the cluster's state (status, the
	// API): one more read, only from a catalog that answered.
	if ok && e.etcd == nil {
		if l, err := e.Catalog.Leader(ctx); err == nil {
			out.Leader = l
		}
	}
	if m := e.Members(); ok && m != nil && e.Cfg.Agent != nil && e.etcd == nil {
		if held, err := m.Members(ctx); err == nil {
			out.Members = held
		}
	}
	if ok && e.Cfg.Backup != nil {
		if list, err := e.Catalog.Backups(ctx); err == nil {
			out.Backups = list
		} else {
			out.Error = err.Error()
		}
	}
	return out
}
