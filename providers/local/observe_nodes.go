package local

import (
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/state"
)

// Observation is what ObserveNodes saw beyond the declared nodes, as
// docker.Observation is.
type Observation struct {
	// Undeclared are the PostgreSQL data directories under the data_dir
	// that no declared node owns: nodes removed from cluster.hcl.
	Undeclared []*state.Node
}

// ObserveNodes observes the declared nodes (Observe) and the data
// directories under dataDir that none of them owns, concurrently, and
// says which data directories and set-aside ones pgha made for cluster
// (CheckOwned): another's are listed, never touched. pg is called for
// each node whose server runs, to fill PostgreSQL's facts; an undeclared
// one's port is read from its postmaster.pid.
func (r *Runtime) ObserveNodes(nodes []*state.Node, dataDir, cluster string, pg func(*state.Node)) *Observation {
	obs := &Observation{Undeclared: undeclared(nodes, dataDir)}
	var wg sync.WaitGroup
	observe := func(n *state.Node, declared bool) {
		defer wg.Done()
		r.Observe(n)
		for i := range n.Aside {
			n.Aside[i].Owned = CheckOwned(n.Aside[i].Path, cluster) == nil
		}
		if n.DirExists || !declared {
			if err := CheckOwned(n.DataDir, cluster); err != nil {
				n.DataForeign = err.Error()
			}
		}
		if !n.Running {
			n.Error = "not running"
			return
		}
		if !declared {
			if n.Port = postmasterPort(n.DataDir); n.Port == 0 {
				return
			}
		}
		pg(n)
	}
	for _, n := range nodes {
		wg.Add(1)
		go observe(n, true)
	}
	for _, n := range obs.Undeclared {
		wg.Add(1)
		go observe(n, false)
	}
	wg.Wait()
	return obs
}

// nodeDirName is what a node's data directory is called under data_dir:
// a node name. Directories set aside (db1.aside-…, db1.before-restore-…)
// carry a dot and are no nodes.
var nodeDirName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// undeclared lists the PostgreSQL data directories (PG_VERSION) under
// dataDir that no declared node has by name or by path.
func undeclared(nodes []*state.Node, dataDir string) []*state.Node {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return nil
	}
	declared := map[string]bool{}
	for _, n := range nodes {
		declared[n.Name], declared[n.DataDir] = true, true
	}
	var out []*state.Node
	for _, e := range entries {
		name := e.Name()
		dir := filepath.Join(dataDir, name)
		if !e.IsDir() || !nodeDirName.MatchString(name) || declared[name] || declared[dir] {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
			continue
		}
		out = append(out, &state.Node{Name: name, Host: "127.0.0.1", DataDir: dir})
	}
	return out
}

// postmasterPort reads the port a running server listens on from its
// postmaster.pid; 0 when it cannot.
func postmasterPort(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pm, _ := pgdata.ParsePostmaster(string(b))
	return pm.Port
}
