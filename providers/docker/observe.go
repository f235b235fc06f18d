package docker

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/pgha/pgha/state"
)

// redisNode is the managed catalog's container and volume name.
const redisNode = "redis"

// statusScript prints one word a line for each fact it finds
// (initialized, standby, running, then "pm_status" and postmaster.pid's
// status line), then asideScript's lines: parseStatus reads them.
var statusScript = `D=` + PGData + `
[ -f $D/PG_VERSION ] && echo initialized
[ -f $D/standby.signal ] && echo standby
[ -f $D/postmaster.pid ] && kill -0 $(head -1 $D/postmaster.pid) 2>/dev/null && echo running && echo "pm_status $(sed -n 8p $D/postmaster.pid)"
` + asideScript

// status is what statusScript printed.
type status struct {
	initialized, standby, running bool
	pmStatus                      string // postmaster.pid's status line; "" when not running
}

// parseStatus reads statusScript's output line by line: a word counts
// only as a whole line, so that a status line "standby" or a set-aside
// path is never taken for standby.signal.
func parseStatus(out string) status {
	var s status
	for _, line := range strings.Split(out, "\n") {
		switch line = strings.TrimSpace(line); {
		case line == "initialized":
			s.initialized = true
		case line == "standby":
			s.standby = true
		case line == "running":
			s.running = true
		case strings.HasPrefix(line, "pm_status"):
			s.pmStatus = strings.TrimSpace(strings.TrimPrefix(line, "pm_status"))
		}
	}
	return s
}

// Observation is what ObserveNodes saw beyond the declared nodes.
type Observation struct {
	Network       bool          // the cluster network exists
	CatalogVolume bool          // the managed catalog's volume exists
	Undeclared    []*state.Node // PostgreSQL containers of the cluster that no declared node owns
}

// ObserveOptions tune ObserveNodes.
type ObserveOptions struct {
	// Quick is for a watcher's check, which must fit in a check interval:
	// a stopped container's volume is looked into through the engine's
	// archive API (does PG_VERSION exist, does standby.signal) instead of
	// a probe container, 20-100 ms instead of 1.7-1.9 s, and its
	// set-aside directories are not listed (Aside stays empty). Whether a
	// server runs is the same either way: in a stopped container none
	// does. Whatever acts on the cluster (plan, apply) observes in full.
	Quick bool
	// NoAside: no node's set-aside directories are listed, not even a
	// running one's (an exec each).
	NoAside bool
}

// ObserveNodes fills the runtime facts of the declared nodes (volume,
// container, data initialised, standby.signal, running, set-aside
// directories) with three list calls and one exec per node, concurrently.
// pg is called for each node whose container runs, to fill PostgreSQL's
// facts: a server that answers says everything at once, and the volume is
// looked into only when it does not. A stopped container's volume is
// looked into with a throwaway container (o.Quick: through the stopped
// container itself), and so is a volume whose container is gone, so that
// a kept volume is restarted and never re-cloned. The error is the
// engine's: nothing could be observed.
func (r *Runtime) ObserveNodes(ctx context.Context, nodes []*state.Node, pg func(*state.Node), o ObserveOptions) (*Observation, error) {
	inv, err := r.eng.Observe(ctx)
	if err != nil {
		return nil, err
	}
	obs := &Observation{Network: inv.Network, CatalogVolume: inv.Volumes[redisNode]}
	declared := map[string]bool{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		declared[n.Name] = true
		n.DirExists = inv.Volumes[n.Name]
		if ct, ok := inv.Containers[n.Name]; ok {
			n.Container = &state.Container{Name: ct.Name, Running: ct.Running, Image: ct.Config}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.observeNode(ctx, n, pg, o)
		}()
	}
	wg.Wait()
	// Scratch restores and volume probes carry the cluster's label too,
	// but are no nodes; their PostgreSQL is not asked.
	var names []string
	for name, ct := range inv.Containers {
		if ct.Role == "postgres" && !declared[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ct := inv.Containers[name]
		n := &state.Node{Name: name, DataDir: "volume " + r.Name(name), DirExists: inv.Volumes[name], Initialized: inv.Volumes[name],
			Running: ct.Running, Container: &state.Container{Name: ct.Name, Running: ct.Running, Image: ct.Config}}
		if !ct.Running {
			n.Error = "not running"
		}
		obs.Undeclared = append(obs.Undeclared, n)
	}
	return obs, nil
}

func (r *Runtime) observeNode(ctx context.Context, n *state.Node, pg func(*state.Node), o ObserveOptions) {
	var out string
	var err error
	switch {
	case n.Container != nil && n.Container.Running:
		pg(n)
		if n.Reachable {
			n.Running, n.Initialized, n.StandbySignal = true, true, n.InRecovery
			if !o.NoAside {
				n.Aside = r.FindAside(ctx, Node{Name: n.Name})
			}
			return
		}
		out, err = r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", statusScript)
	case n.Container != nil && o.Quick:
		r.statStopped(ctx, n)
		return
	case n.DirExists:
		out, err = r.eng.Run(ctx, r.o.Image, n.Name, VolumeDir, "sh", "-c", statusScript)
	default:
		n.Error = "not running"
		return
	}
	if err != nil {
		n.RuntimeError = err.Error()
		return
	}
	if !o.NoAside {
		n.Aside = parseAside(out, r.o.Cluster)
	}
	st := parseStatus(out)
	n.Initialized, n.StandbySignal = st.initialized, st.standby
	// In a probe container a stale postmaster.pid may name one of its own
	// processes: only the node's container can say PostgreSQL runs.
	n.Running = n.Container != nil && n.Container.Running && st.running
	if n.Running {
		n.PMStatus = st.pmStatus
	} else {
		n.Error = "not running"
	}
}

// statStopped fills what a stopped container's volume says (data
// initialised, standby.signal) through the engine's archive API, both
// files asked at once: ObserveOptions.Quick.
func (r *Runtime) statStopped(ctx context.Context, n *state.Node) {
	var initialized, standby bool
	var errI, errS error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); initialized, errI = r.eng.Exists(ctx, n.Name, PGData+"/PG_VERSION") }()
	go func() { defer wg.Done(); standby, errS = r.eng.Exists(ctx, n.Name, PGData+"/standby.signal") }()
	wg.Wait()
	if err := errors.Join(errI, errS); err != nil {
		n.RuntimeError = err.Error()
		return
	}
	n.Initialized, n.StandbySignal = initialized, standby
	n.Error = "not running"
}
