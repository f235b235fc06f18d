package reconcile

import (
	"context"
	"sync"
	"time"

	"github.com/pgha/pgha/state"
)

// settleTimeout bounds how long a failover waits for the standbys' replay
// to come to rest before it compares them.
const settleTimeout = 3 * time.Second

// settle observes the cluster again until every reachable standby's replay
// position has stopped moving, and returns that last snapshot.
//
// Why: once its primary is gone, a standby's WAL receiver keeps asking for
// a new stream, and each request resets pg_last_wal_receive_lsn() to the
// start of the current WAL segment. What the standby really received is
// then known only from how far it replays, and replay may still be working
// through the last WAL it got. Comparing candidates before replay is at rest
// can rank a standby that received everything as low as one that was cut
// off long before — and promote the wrong one, or let a laggard through
// maximum_lag. Replay always ends at the end of the received WAL, so a
// position that holds still across two observations is the true one.
func (e *Env) settle(ctx context.Context, s *state.Cluster) *state.Cluster {
	deadline := time.Now().Add(settleTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return s
		case <-time.After(150 * time.Millisecond):
		}
		next := e.reobserveStandbys(ctx, s)
		if replayAtRest(s, next) {
			return next
		}
		s = next
	}
	return s
}

// reobserveStandbys returns a copy of s in which what PostgreSQL says
// about each reachable standby is observed again, concurrently; the rest
// (runtime, catalog, backups) does not move in the moments settle waits,
// so it is not asked again.
func (e *Env) reobserveStandbys(ctx context.Context, s *state.Cluster) *state.Cluster {
	next := *s
	next.Nodes = make([]*state.Node, len(s.Nodes))
	var wg sync.WaitGroup
	for i, n := range s.Nodes {
		cp := *n
		next.Nodes[i] = &cp
		cn := e.Cfg.Node(n.Name)
		if cn == nil || !n.Reachable || !n.InRecovery {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.observePG(ctx, cn, &cp, ObserveTimeout)
		}()
	}
	wg.Wait()
	return &next
}

// replayAtRest reports whether no reachable standby replayed further
// between two snapshots of the same cluster.
func replayAtRest(before, after *state.Cluster) bool {
	prev := map[string]state.LSN{}
	for _, n := range before.Nodes {
		if n.Reachable && n.InRecovery {
			prev[n.Name] = n.ReplayLSN
		}
	}
	for _, n := range after.Nodes {
		if !n.Reachable || !n.InRecovery {
			continue
		}
		if p, ok := prev[n.Name]; !ok || p != n.ReplayLSN {
			return false
		}
	}
	return true
}
