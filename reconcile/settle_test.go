package reconcile

import (
	"testing"

	"github.com/pgha/pgha/state"
)

func TestReplayAtRest(t *testing.T) {
	standby := func(name string, replay state.LSN) *state.Node {
		return &state.Node{Name: name, Reachable: true, InRecovery: true, ReplayLSN: replay}
	}
	down := &state.Node{Name: "db1"}
	primary := &state.Node{Name: "db1", Reachable: true, CurrentLSN: 0x7000000}
	cases := []struct {
		name          string
		before, after []*state.Node
		want          bool
	}{
		{"nothing moved", []*state.Node{down, standby("db2", 0x60852C0)}, []*state.Node{down, standby("db2", 0x60852C0)}, true},
		{"a standby still replays", []*state.Node{down, standby("db2", 0x6000000)}, []*state.Node{down, standby("db2", 0x60852C0)}, false},
		{"one of two still replays", []*state.Node{standby("db2", 0x6000000), standby("db3", 0x5000000)},
			[]*state.Node{standby("db2", 0x6000000), standby("db3", 0x5000100)}, false},
		{"a standby became reachable", []*state.Node{down, {Name: "db2"}}, []*state.Node{down, standby("db2", 0x6000000)}, false},
		{"a primary's position does not count", []*state.Node{primary, standby("db2", 1)}, []*state.Node{{Name: "db1", Reachable: true, CurrentLSN: 0x8000000}, standby("db2", 1)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := replayAtRest(&state.Cluster{Nodes: c.before}, &state.Cluster{Nodes: c.after})
			if got != c.want {
				t.Fatalf("replayAtRest = %v, want %v", got, c.want)
			}
		})
	}
}
