package reconcile

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// BuildStatus summarises an observation for people and scripts.
func BuildStatus(c *config.Cluster, s *state.Cluster) report.Status {
	out := report.Status{Cluster: c.Name, DeclaredPrimary: c.Primary, ObservedAt: s.ObservedAt, Nodes: []report.NodeStatus{}, RuntimeError: s.RuntimeError}
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
		// Where pgha reaches the node: on Docker the published port, on
		// the engine's host when that is another one.
		host, port := c.AdminEndpoint(cn)
		ns := report.NodeStatus{Name: cn.Name, Role: n.Role(), Running: n.Running, Reachable: n.Reachable, Host: host,
			Port: port, DataDir: cn.DataDir, Timeline: n.Timeline, Version: n.ServerVersion}
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
	if c.HasAuthority() {
		cs := &report.CatalogState{Kind: "redis", Reachable: s.Catalog.Reachable, Lock: s.Catalog.Lock, Leader: s.Catalog.Leader, Error: s.Catalog.Error}
		if c.Catalog != nil {
			cs.Address = c.Catalog.Address
		}
		if a := s.Authority; a != nil {
			cs.Kind, cs.Address, cs.Reachable, cs.Error = a.Kind, strings.Join(a.Endpoints, ","), a.Reachable, a.Error
			cs.Members, cs.Answering = len(a.Endpoints), a.Answering
		}
		if r := s.Catalog.Record; r != nil {
			cs.Primary, cs.Generation = r.Primary, r.Generation
			if r.Switching() {
				cs.Switching = fmt.Sprintf("%s -> %s since %s", r.SwitchingFromNode(), r.SwitchingTo, r.SwitchingSince.UTC().Format(time.RFC3339))
			}
		}
		out.Catalog = cs
	}
	if c.Agent != nil && s.Catalog.Members != nil {
		for _, cn := range c.Nodes {
			as := report.AgentStatus{Node: cn.Name}
			if l, ok := s.Catalog.Members[cn.Name]; ok {
				as.Held, as.Holder = true, &l
			}
			out.Agents = append(out.Agents, as)
		}
	}
	if primary != nil {
		if sy := plan.ObserveSync(c, s, primary.Name); sy.Declared || sy.Setting != "" {
			out.Synchronous = &sy
		}
	}
	return out
}
