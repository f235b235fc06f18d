package reconcile

import (
	"fmt"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// BuildStatus summarises an observation for people and scripts.
func BuildStatus(c *config.Cluster, s *state.Cluster) report.Status {
	out := report.Status{Cluster: c.Name, DeclaredPrimary: c.Primary, ObservedAt: s.ObservedAt, Nodes: []report.NodeStatus{}}
	var primary *state.Node
	for _, n := range s.Nodes {
		if n.Role() == state.RolePrimary {
			primary = n
		}
	}
	for _, cn := range c.Nodes {
		n := s.Node(cn.Name)
		if n == nil {
			n = &state.Node{Name: cn.Name}
		}
		ns := report.NodeStatus{Name: cn.Name, Role: n.Role(), Running: n.Running, Reachable: n.Reachable, Host: cn.Host,
			Port: cn.Port, DataDir: cn.DataDir, Timeline: n.Timeline, Version: n.ServerVersion}
		if !n.Reachable && n.Error != "not running" {
			ns.Error = n.Error
		}
		if n.Reachable {
			ns.LSN = n.LSN().String()
		}
		if n.Role() == state.RoleStandby {
			ns.Slot = cn.Slot
			if u := n.Upstream; u != nil {
				ns.Upstream = fmt.Sprintf("%s:%d", u.Host, u.Port)
				ns.Streaming = u.Status == "streaming"
				ns.Slot = u.Slot
			}
			if primary != nil {
				lag := int64(primary.CurrentLSN) - int64(n.ReplayLSN)
				lag = max(lag, 0)
				ns.LagBytes = &lag
				var secs float64
				if r := primary.Replica(cn.Name); r != nil {
					secs = r.ReplayLag.Seconds()
				}
				ns.LagSeconds = &secs
			}
		}
		if n.Role() == state.RolePrimary {
			zero, secs := int64(0), 0.0
			ns.LagBytes, ns.LagSeconds = &zero, &secs
		}
		out.Nodes = append(out.Nodes, ns)
	}
	for _, n := range s.Undeclared {
		ns := report.NodeStatus{Name: n.Name, Role: n.Role(), Running: n.Running, Reachable: n.Reachable, Host: n.Host,
			Port: n.Port, DataDir: n.DataDir, Timeline: n.Timeline, Version: n.ServerVersion, Undeclared: true}
		if !n.Reachable && n.Error != "not running" {
			ns.Error = n.Error
		}
		if n.Reachable {
			ns.LSN = n.LSN().String()
		}
		if u := n.Upstream; u != nil {
			ns.Upstream, ns.Streaming, ns.Slot = fmt.Sprintf("%s:%d", u.Host, u.Port), u.Status == "streaming", u.Slot
		}
		out.Nodes = append(out.Nodes, ns)
	}
	if c.Catalog != nil {
		cs := &report.CatalogState{Address: c.Catalog.Address, Reachable: s.Catalog.Reachable, Lock: s.Catalog.Lock, Leader: s.Catalog.Leader, Error: s.Catalog.Error}
		if r := s.Catalog.Record; r != nil {
			cs.Primary, cs.Generation = r.Primary, r.Generation
			if r.Switching() {
				cs.Switching = fmt.Sprintf("%s -> %s since %s", r.SwitchingFromNode(), r.SwitchingTo, r.SwitchingSince.UTC().Format(time.RFC3339))
			}
		}
		out.Catalog = cs
	}
	return out
}
