package views

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// TestStatusLeader: the human status names the watcher holding the
// leader lease, says that none does when the catalog answers without
// one, and says nothing about it when the catalog cannot be read.
func TestStatusLeader(t *testing.T) {
	at := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	leader := &state.Lock{ID: "x", Owner: "postgres", Host: "db-host-1", PID: 4242, Operation: "watch", Created: at}
	for _, tc := range []struct {
		name    string
		catalog *report.CatalogState
		want    string // a line that must appear ("" none)
		not     string // text that must not
	}{
		{"leader", &report.CatalogState{Address: "127.0.0.1:6379", Reachable: true, Primary: "db1", Generation: 3, Leader: leader},
			"Watch leader: postgres@db-host-1 pid 4242, since 2026-12-01T06:00:00Z", "none"},
		{"no watcher", &report.CatalogState{Address: "127.0.0.1:6379", Reachable: true, Primary: "db1", Generation: 3},
			"Watch leader: none (no `pgha watch` holds the lease)", "pid"},
		{"unreachable", &report.CatalogState{Address: "127.0.0.1:6379", Error: "connection refused"},
			"Catalog: redis 127.0.0.1:6379 unreachable: connection refused", "Watch leader"},
		{"no catalog", nil, "Cluster demo (declared primary db1)", "Watch leader"},
		{"switchover intent", &report.CatalogState{Address: "127.0.0.1:6379", Reachable: true, Primary: "db1", Generation: 3, Switching: "db1 -> db2 since 2026-12-01T06:00:00Z"},
			"Switchover under way (the catalog's intent): db1 -> db2 since 2026-12-01T06:00:00Z", "unreachable"},
		{"no switchover intent", &report.CatalogState{Address: "127.0.0.1:6379", Reachable: true, Primary: "db1", Generation: 3},
			"Catalog: redis 127.0.0.1:6379, recorded primary db1, generation 3", "Switchover under way"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := NewHuman(&b).Status(report.Status{Cluster: "demo", DeclaredPrimary: "db1", Catalog: tc.catalog}); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if !strings.Contains(out, tc.want+"\n") {
				t.Errorf("want the line %q in:\n%s", tc.want, out)
			}
			if strings.Contains(out, tc.not) {
				t.Errorf("%q must not appear in:\n%s", tc.not, out)
			}
		})
	}
}

// TestStatusAgents: with agents declared, the human status says which
// nodes' agents hold their member leases.
func TestStatusAgents(t *testing.T) {
	var b bytes.Buffer
	st := report.Status{Cluster: "demo", DeclaredPrimary: "db1", Agents: []report.AgentStatus{
		{Node: "db1", Held: true, Holder: &state.Lock{Host: "h1", PID: 42}}, {Node: "db2"}}}
	if err := NewHuman(&b).Status(st); err != nil {
		t.Fatal(err)
	}
	if want := "Agents (member leases): db1 held (h1 pid 42), db2 none\n"; !strings.Contains(b.String(), want) {
		t.Errorf("want %q in:\n%s", want, b.String())
	}
}
