package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestDecideFence is the agent's rule as a table: only a running primary
// is ever stopped, and only for a lost lease or a newer record naming
// another primary.
func TestDecideFence(t *testing.T) {
	rec := func(primary string, gen int64) *state.ClusterRecord {
		return &state.ClusterRecord{Primary: primary, Generation: gen}
	}
	cases := []struct {
		name  string
		in    FenceInput
		fence bool
		why   string
	}{
		{"primary, lease held, record names it", FenceInput{Running: true, Primary: true, Record: rec("db1", 3), OwnGeneration: 3}, false, "holds the member lease"},
		{"primary, lease held, record unread", FenceInput{Running: true, Primary: true}, false, "holds the member lease"},
		{"primary, lease lost", FenceInput{Running: true, Primary: true, LeaseLost: true}, true, "authority is unreachable from this host"},
		{"primary, lease lost, record stale in memory", FenceInput{Running: true, Primary: true, LeaseLost: true, Record: rec("db1", 3), OwnGeneration: 3}, true, "could not be renewed"},
		{"primary, newer generation elsewhere", FenceInput{Running: true, Primary: true, Record: rec("db2", 4), OwnGeneration: 3}, true, "names db2 the primary at generation 4"},
		{"primary, record elsewhere never seen own", FenceInput{Running: true, Primary: true, Record: rec("db2", 1)}, true, "newer than 0"},
		{"just promoted, the record still names the old primary", FenceInput{Running: true, Primary: true, Record: rec("db2", 4), OwnGeneration: 4}, false, "holds the member lease"},
		{"record lists it to rejoin", FenceInput{Running: true, Primary: true, Record: &state.ClusterRecord{Primary: "db2", Generation: 4, Rejoin: []string{"db1"}}, OwnGeneration: 4}, true, "must rejoin"},
		{"primary, record elsewhere but not newer", FenceInput{Running: true, Primary: true, Record: rec("db2", 3), OwnGeneration: 3}, false, "holds the member lease"},
		{"primary, both reasons", FenceInput{Running: true, Primary: true, LeaseLost: true, Record: rec("db2", 5), OwnGeneration: 3}, true, "; "},
		{"standby, lease lost", FenceInput{Running: true, Primary: false, LeaseLost: true}, false, "is a standby"},
		{"standby, newer generation elsewhere", FenceInput{Running: true, Record: rec("db2", 9)}, false, "is a standby"},
		{"stopped primary, lease lost", FenceInput{Running: false, Primary: true, LeaseLost: true}, false, "is not running"},
		{"crashed primary starting as a standby, lease lost", FenceInput{Running: true, Primary: true, StartingStandby: true, LeaseLost: true}, false, "starting as a standby"},
		{"crashed primary starting as a standby, record lists it to rejoin", FenceInput{Running: true, Primary: true, StartingStandby: true, Record: &state.ClusterRecord{Primary: "db2", Generation: 4, Rejoin: []string{"db1"}}, OwnGeneration: 4}, false, "comes up in recovery"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.Node = "db1"
			d := DecideFence(c.in)
			if d.Fence != c.fence {
				t.Fatalf("fence = %v, want %v (reasons %q)", d.Fence, c.fence, d.Reasons)
			}
			if got := strings.Join(d.Reasons, "; "); !strings.Contains(got, c.why) {
				t.Errorf("reasons %q do not say %q", got, c.why)
			}
		})
	}
}

// TestAgentGate: with agents declared, a lost primary is not restarted
// in place when its agent fenced it or holds no lease, and no standby is
// promoted while the lease is held by an agent whose node the runtime
// cannot fence (or that fenced it a moment ago).
func TestAgentGate(t *testing.T) {
	c := &config.Cluster{Agent: &config.Agent{SelfFence: 5 * time.Second}, Nodes: []*config.Node{{Name: "db1"}, {Name: "db2"}}}
	held := map[string]state.Lock{"db1": {ID: "a", Host: "h1", PID: 7}, "db2": {ID: "b"}}
	without := map[string]state.Lock{"db2": {ID: "b"}}
	cases := []struct {
		name          string
		agents        bool
		members       map[string]state.Lock
		node          state.Node
		restart, wait string // substrings; "" = none
	}{
		{"no agent block", false, without, state.Node{Name: "db1", RuntimeError: "engine unreachable"}, "", ""},
		{"leases not read", true, nil, state.Node{Name: "db1", RuntimeError: "engine unreachable"}, "", ""},
		{"crash, agent holds, runtime answers", true, held, state.Node{Name: "db1"}, "", ""},
		{"runtime unreachable, agent holds", true, held, state.Node{Name: "db1", RuntimeError: "engine unreachable"}, "", "cannot reach db1 to fence it"},
		{"runtime unreachable, lease gone", true, without, state.Node{Name: "db1", RuntimeError: "engine unreachable"}, "holds no member lease", ""},
		{"fenced by agent, lease not yet expired: the runtime saw it fenced", true, held, state.Node{Name: "db1", StandbySignal: true}, "stopped it and marked it", ""},
		{"fenced by agent, lease gone", true, without, state.Node{Name: "db1", StandbySignal: true}, "stopped it and marked it", ""},
		{"lease gone, process dead", true, without, state.Node{Name: "db1"}, "holds no member lease", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := *c
			if !tc.agents {
				cc.Agent = nil
			}
			n := tc.node
			s := &state.Cluster{Nodes: []*state.Node{&n, {Name: "db2", Running: true, Reachable: true, InRecovery: true}}}
			s.Catalog.Members = tc.members
			restart, wait := agentGate(&cc, s, "db1")
			for _, x := range []struct{ got, want, what string }{{restart, tc.restart, "noRestart"}, {wait, tc.wait, "wait"}} {
				if (x.want == "") != (x.got == "") || !strings.Contains(x.got, x.want) {
					t.Errorf("%s = %q, want %q", x.what, x.got, x.want)
				}
			}
		})
	}
}

// unreachableRuntime is the fake runtime where one node's host does not
// answer (a Docker engine on another host, away): its facts are an error
// and nothing can be done to it.
type unreachableRuntime struct {
	fakeRuntime
	node string
}

func (r unreachableRuntime) Observe(ctx context.Context, s *state.Cluster, pg func(*config.Node, *state.Node), o ObserveOptions) {
	r.fakeRuntime.Observe(ctx, s, pg, o)
	if sn := s.Node(r.node); sn != nil {
		sn.Running, sn.StandbySignal, sn.RuntimeError = false, false, "cannot connect to the Docker engine of "+r.node+"'s host"
		sn.Reachable, sn.Error = false, "dial tcp: i/o timeout"
	}
}

// TestWatchWaitsForMemberLease: with agents declared, a lost primary
// that the runtime cannot fence is not replaced while its agent holds
// the member lease (real Redis); once the lease expires the watcher
// promotes, counting the node as fenced by its agent.
func TestWatchWaitsForMemberLease(t *testing.T) {
	r := testenv.StartRedis(t)
	w, c, log := watcherOn(t, fmt.Sprintf("catalog \"redis\" {\n address = %q\n}\nagent {\n self_fence = \"2s\"\n}\nfailover {\n primary_crash = \"failover\"\n failure_threshold = 1\n}", r.Addr))
	attachCatalog(w.Env, r.Addr)
	if out := w.Tick(context.Background()); out.Err != nil {
		t.Fatalf("first check: %v\n%s", out.Err, log.String())
	}
	// db1's agent holds its lease; then db1's host goes away: its server
	// is out of the watcher's reach and the runtime's.
	lctx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	if _, err := w.Env.Members().HoldMember(lctx, "db1", state.Lock{ID: "agent-db1", Host: "h1", PID: 1, Operation: "agent db1"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	c.node("db1").running = false // the standbys no longer hear it
	w.Env.Runtime = unreachableRuntime{fakeRuntime{c}, "db1"}
	c.fail["MarkFenced db1"] = errors.New("cannot connect to the Docker engine")
	c.fail["Stop db1"] = errors.New("cannot connect to the Docker engine")
	for range 3 {
		w.Tick(context.Background())
	}
	if c.called("pg.Promote") {
		t.Fatalf("promoted while db1's agent held its lease:\n%s", log.String())
	}
	waits := log.records(t, "failover waits")
	if len(waits) != 1 || !strings.Contains(fmt.Sprint(waits[0]["reason"]), "cannot reach db1 to fence it") {
		t.Fatalf("failover waits: %v\n%s", waits, log.String())
	}
	// The agent stops renewing (its host cut off): the lease expires.
	stopAgent()
	start := time.Now()
	for time.Since(start) < 5*time.Second && !c.called("pg.Promote") {
		w.Tick(context.Background())
		time.Sleep(200 * time.Millisecond)
	}
	if !c.called("pg.Promote") {
		t.Fatalf("no promotion after db1's lease expired:\n%s\n%s", log.String(), c.log())
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("promoted %s after the agent stopped renewing a 2 s lease", waited)
	}
	if p := c.primaryRunning(); p != "db2" && p != "db3" {
		t.Fatalf("new primary %q", p)
	}
	if over := log.records(t, "failover waits"); len(over) != 2 || over[1]["outcome"] != "over" {
		t.Errorf("the end of the wait is not logged: %v", over)
	}
}
