// Package reconcile sequences side effects: it observes the cluster through
// the providers, asks the pure planner what to do, and executes the plan in
// order under the cluster lock.
package reconcile

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/providers/local"
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
	Runtime *local.Runtime
	Catalog *redis.Catalog // nil when the file declares no catalog
}

// Open prepares the providers for cfg. It connects to nothing yet.
func Open(cfg *config.Cluster) (*Env, error) {
	rt, err := local.New(local.Options{BinDir: cfg.Runtime.BinDir, RunAs: cfg.Runtime.RunAs})
	if err != nil {
		return nil, fmt.Errorf("local runtime: %w", err)
	}
	e := &Env{Cfg: cfg, Runtime: rt}
	if c := cfg.Catalog; c != nil {
		e.Catalog = redis.New(c.Address, c.Password.Reveal(), c.DB, cfg.Name)
	}
	return e, nil
}

// Close releases the catalog connection.
func (e *Env) Close() {
	if e.Catalog != nil {
		_ = e.Catalog.Close()
	}
}

// superuser is how pgha talks to a node.
func (e *Env) superuser(n *config.Node) postgres.Endpoint {
	return postgres.Endpoint{Host: n.Host, Port: n.Port, User: e.Cfg.Postgres.Superuser, Password: e.Cfg.Postgres.Password.Reveal()}
}

// Observe takes a snapshot of every node and the catalog, concurrently.
// Nothing unreachable is an error: it is a fact in the snapshot.
func (e *Env) Observe(ctx context.Context) *state.Cluster {
	s := &state.Cluster{Name: e.Cfg.Name, ObservedAt: time.Now().UTC()}
	var wg sync.WaitGroup
	for _, cn := range e.Cfg.Nodes {
		n := &state.Node{Name: cn.Name, Host: cn.Host, Port: cn.Port, DataDir: cn.DataDir}
		s.Nodes = append(s.Nodes, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.observeNode(ctx, cn, n)
		}()
	}
	if e.Catalog != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Catalog = e.observeCatalog(ctx)
		}()
	}
	wg.Wait()
	return s
}

func (e *Env) observeNode(ctx context.Context, cn *config.Node, n *state.Node) {
	e.Runtime.Observe(n)
	if !n.Running {
		n.Error = "not running"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
	defer cancel()
	var roles map[string]string
	if cn.Name == e.Cfg.Primary {
		// Only the primary's verifier is compared: that is where role.ensure acts.
		roles = map[string]string{e.Cfg.Replication.User: e.Cfg.Replication.Password.Reveal()}
	} else {
		roles = map[string]string{e.Cfg.Replication.User: ""}
	}
	postgres.Observe(ctx, e.superuser(cn), n, roles)
}

func (e *Env) observeCatalog(ctx context.Context) state.Catalog {
	c := e.Cfg.Catalog
	out := state.Catalog{Configured: true, Address: c.Address, Managed: c.Managed}
	if c.Managed {
		if _, err := os.Stat(c.DataDir); err == nil {
			out.DirExists = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
	defer cancel()
	ok, rec, lock, err := e.Catalog.Observe(ctx)
	out.Reachable, out.Record, out.Lock = ok, rec, lock
	if err != nil {
		out.Error = err.Error()
	}
	return out
}
