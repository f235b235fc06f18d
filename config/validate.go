package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// validate checks what holds across blocks: the primary exists, names,
// ports and slots are unique.
func validate(c *Cluster) hcl.Diagnostics {
	var diags hcl.Diagnostics
	add := func(r hcl.Range, summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()})
	}
	if len(c.Nodes) == 0 {
		add(c.PrimaryRange, "No nodes", `Declare at least one node "NAME" { port = ... } block.`)
		return diags
	}
	names := map[string]*Node{}
	endpoints := map[string]*Node{}
	slots := map[string]*Node{}
	for _, n := range c.Nodes {
		if first := names[n.Name]; first != nil {
			add(n.DeclRange, "Duplicate node", fmt.Sprintf("A node named %q is already declared at %s. Node names are unique.", n.Name, pos(first.DeclRange)))
			continue
		}
		names[n.Name] = n
		ep := endpointKey(n.Host, n.Port)
		if first := endpoints[ep]; first != nil {
			add(n.DeclRange, "Two nodes on one port",
				fmt.Sprintf("Node %q uses %s:%d, as node %q does (%s). Give each node its own port.", n.Name, n.Host, n.Port, first.Name, pos(first.DeclRange)))
		} else {
			endpoints[ep] = n
		}
		if n.Slot != "" {
			if first := slots[n.Slot]; first != nil {
				add(n.DeclRange, "Duplicate slot name", fmt.Sprintf("Nodes %q and %q both declare slot %q. Each standby needs its own slot.", first.Name, n.Name, n.Slot))
			} else {
				slots[n.Slot] = n
			}
		}
	}
	if c.Primary != "" && names[c.Primary] == nil {
		var declared []string
		for name := range names {
			declared = append(declared, name)
		}
		sort.Strings(declared)
		add(c.PrimaryRange, "Unknown primary",
			fmt.Sprintf("primary = %q names no node; the declared nodes are: %s.", c.Primary, strings.Join(declared, ", ")))
	}
	if cat := c.Catalog; cat != nil && cat.Address != "" {
		if h, p, err := splitHostPort(cat.Address); err == nil {
			if n := endpoints[endpointKey(h, p)]; n != nil {
				add(cat.DeclRange, "Catalog and node on one port",
					fmt.Sprintf("The Redis catalog at %s uses the port of node %q. Give Redis its own port.", cat.Address, n.Name))
			}
		}
	}
	return diags
}

// endpointKey treats the loopback spellings as one host.
func endpointKey(host string, port int) string {
	switch host {
	case "localhost", "127.0.0.1", "::1", "":
		host = "loopback"
	}
	return fmt.Sprintf("%s:%d", host, port)
}
