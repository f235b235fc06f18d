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
// DestroyOptions steer a destroy plan.
type DestroyOptions struct {
	// DeleteVolumes also deletes Docker volumes (the data). Without it a
	// docker destroy removes containers and the network and keeps the data;
	// the local runtime always deletes its data directories.
	DeleteVolumes bool
}

func BuildDestroy(c *config.Cluster, s *state.Cluster, o DestroyOptions) (*Plan, error) {
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
		keep := c.IsDocker() && !o.DeleteVolumes
		switch {
		case keep && n.Container != nil:
			a := newAction(NodeDestroy, Delete, cn.Name, cn.Name,
				fmt.Sprintf("remove the container of %s; its volume (the data) is kept: pass -delete-volumes to delete it", cn.Name))
			a.Before = map[string]string{"container": n.Container.Name}
			a.After = map[string]string{"volume": "kept"}
			a.Params = Params{KeepVolume: true}
			a.DependsOn = deps(stop)
			p.Actions = append(p.Actions, a)
			prev = append(prev, a.ID)
		case !keep && n.DataForeign != "" && n.Container == nil:
			// pgha deletes only the data directories it made.
			p.Diagnostics = append(p.Diagnostics, Diagnostic{Severity: Warning, Node: cn.Name,
				Summary: fmt.Sprintf("destroy leaves the data directory of %s: pgha did not make it", cn.Name),
				Detail:  n.DataForeign})
			if stop != "" {
				prev = append(prev, stop)
			}
		case !keep && (n.DirExists || n.Container != nil):
			what := "the data directory"
			before := map[string]string{"data_dir": cn.DataDir}
			if c.IsDocker() {
				what = "the container and the volume"
				before = map[string]string{"volume": c.ContainerName(cn.Name)}
			}
			a := newAction(NodeDestroy, Delete, cn.Name, cn.Name, fmt.Sprintf("delete %s of %s", what, cn.Name))
			a.Before = before
			a.DataLoss = true
			a.DependsOn = deps(stop)
			p.Actions = append(p.Actions, a)
			prev = append(prev, a.ID)
		case stop != "":
			prev = append(prev, stop)
		}
	}
	if c.Catalog != nil && (s.Catalog.Reachable || (s.Catalog.DirExists && !(c.IsDocker() && !o.DeleteVolumes))) {
		var all []string
		for _, a := range p.Actions {
			all = append(all, a.ID)
		}
		if c.Catalog.Managed && s.Catalog.DirForeign != "" && !c.IsDocker() {
			p.Diagnostics = append(p.Diagnostics, Diagnostic{Severity: Warning,
				Summary: "destroy leaves the catalog's directory: pgha did not make it", Detail: s.Catalog.DirForeign})
		} else if c.Catalog.Managed {
			a := newAction(CatalogDestroy, Delete, "", "redis", "stop the managed Redis catalog and delete its files")
			a.Before = map[string]string{"address": c.Catalog.Address, "dir": c.Catalog.DataDir}
			a.DataLoss = true
			if c.IsDocker() {
				a.Before["dir"] = c.ContainerName("redis")
				if !o.DeleteVolumes {
					a.Reason = "remove the managed Redis catalog's container; its volume is kept"
					a.DataLoss = false
					a.After = map[string]string{"volume": "kept"}
					a.Params = Params{KeepVolume: true}
				}
			}
			a.DependsOn = all
			p.Actions = append(p.Actions, a)
		} else if s.Catalog.Record != nil && c.Authority == nil {
			a := newAction(CatalogRecord, Delete, "", "cluster", "remove the cluster's record and history from the catalog")
			a.Before = map[string]string{"primary": s.Catalog.Record.Primary}
			a.DependsOn = all
			p.Actions = append(p.Actions, a)
		}
	}
	// With authority "etcd" the record is etcd's: removed there (the
	// lock and the leases go with their holders' leases).
	if c.Authority != nil && s.Authority != nil && s.Authority.Reachable && s.Catalog.Record != nil {
		var all []string
		for _, a := range p.Actions {
			all = append(all, a.ID)
		}
		a := newAction(CatalogRecord, Delete, "", "cluster", "remove the cluster's record from the etcd authority")
		a.Before = map[string]string{"primary": s.Catalog.Record.Primary}
		a.DependsOn = all
		p.Actions = append(p.Actions, a)
	}
	return p, nil
}
