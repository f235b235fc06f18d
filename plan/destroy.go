package plan

import (
	"fmt"
	"strings"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// PreventDestroyError says which nodes refuse to be destroyed.
type PreventDestroyError struct{ Nodes []string }

func (e *PreventDestroyError) Error() string {
	return fmt.Sprintf("node %s has prevent_destroy = true; remove that line from cluster.hcl first if you really mean to delete its data",
		strings.Join(e.Nodes, ", "))
}

// BuildDestroy plans the removal of every node (standbys first, the primary
// last), their data directories, and the managed catalog. Every data
// directory removal is marked as data loss.
func BuildDestroy(c *config.Cluster, s *state.Cluster) (*Plan, error) {
	var protected []string
	for _, n := range c.Nodes {
		if n.PreventDestroy {
			protected = append(protected, n.Name)
		}
	}
	if len(protected) > 0 {
		return nil, &PreventDestroyError{Nodes: protected}
	}
	p := newPlan(c, s, "destroy")
	var order []*config.Node
	for _, n := range c.Nodes {
		if n.Name != c.Primary {
			order = append(order, n)
		}
	}
	order = append(order, c.PrimaryNode())
	var prev []string
	for _, cn := range order {
		n := s.Node(cn.Name)
		if n == nil {
			continue
		}
		var stop string
		if n.Running {
			a := newAction(NodeStop, Delete, cn.Name, cn.Name, fmt.Sprintf("stop %s before removing it", cn.Name))
			a.Before = map[string]string{"running": "true"}
			a.DependsOn = deps(prev...)
			p.Actions = append(p.Actions, a)
			stop = a.ID
		}
		if n.DirExists {
			a := newAction(NodeDestroy, Delete, cn.Name, cn.Name, fmt.Sprintf("delete the data directory of %s", cn.Name))
			a.Before = map[string]string{"data_dir": cn.DataDir}
			a.DataLoss = true
			a.DependsOn = deps(stop)
			p.Actions = append(p.Actions, a)
			prev = append(prev, a.ID)
		} else if stop != "" {
			prev = append(prev, stop)
		}
	}
	if c.Catalog != nil && (s.Catalog.Reachable || s.Catalog.DirExists) {
		var all []string
		for _, a := range p.Actions {
			all = append(all, a.ID)
		}
		if c.Catalog.Managed {
			a := newAction(CatalogDestroy, Delete, "", "redis", "stop the managed Redis catalog and delete its files")
			a.Before = map[string]string{"address": c.Catalog.Address, "dir": c.Catalog.DataDir}
			a.DataLoss = true
			a.DependsOn = all
			p.Actions = append(p.Actions, a)
		} else if s.Catalog.Record != nil {
			a := newAction(CatalogRecord, Delete, "", "cluster", "remove the cluster's record and history from the catalog")
			a.Before = map[string]string{"primary": s.Catalog.Record.Primary}
			a.DependsOn = all
			p.Actions = append(p.Actions, a)
		}
	}
	return p, nil
}
