package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func testCfg() *config.Cluster {
	return &config.Cluster{Name: "t", Primary: "db1", Failover: config.Failover{CheckInterval: time.Second},
		Nodes: []*config.Node{{Name: "db1", Port: 5441}, {Name: "db2", Port: 5442}, {Name: "db3", Port: 5443}}}
}

// healthy is db1 writable at 0/3000000, db2 streaming 1 MiB behind, db3
// a standby that does not stream; the record names db1.
func healthy() *state.Cluster {
	return &state.Cluster{Name: "t", ObservedAt: t0, Nodes: []*state.Node{
		{Name: "db1", Running: true, Reachable: true, Timeline: 1, CurrentLSN: 0x3000000},
		{Name: "db2", Running: true, Reachable: true, InRecovery: true, Timeline: 1, ReceiveLSN: 0x2f00000, ReplayLSN: 0x2f00000,
			Upstream: &state.Upstream{Status: "streaming", Host: "127.0.0.1", Port: 5441}},
		{Name: "db3", Running: true, Reachable: true, InRecovery: true, Timeline: 1, ReplayLSN: 0x1000000},
	}, Catalog: state.Catalog{Reachable: true, Record: &state.ClusterRecord{Primary: "db1", Generation: 3}}}
}

func snapOf(s *state.Cluster) *Snapshot {
	return &Snapshot{Cfg: testCfg(), State: s, At: s.ObservedAt, Record: s.Catalog.Record}
}

func TestHealth(t *testing.T) {
	dead := healthy()
	dead.Nodes[0] = &state.Node{Name: "db1", Running: false, Error: "not running"}
	otherRecorded := healthy()
	otherRecorded.Catalog.Record = &state.ClusterRecord{Primary: "db2", Generation: 4}
	noRecord := healthy()
	noRecord.Catalog.Record = nil
	// The write probe after the observation failed: on the primary, on
	// another node (a verdict about db2), or by a timeout (not recorded).
	unwritable := func(node string) *Snapshot {
		s := snapOf(healthy())
		s.Verdict.Node = node
		s.Unwritable = "heartbeat on db1: FATAL: terminating connection due to unexpected postmaster exit (SQLSTATE 57P01)"
		return s
	}
	cases := []struct {
		name, check, node, query string
		snap                     *Snapshot
		age                      time.Duration
		want                     int
		reason                   string
		lost                     string
	}{
		{"primary of the primary", "primary", "db1", "", snapOf(healthy()), 0, 200, "", ""},
		{"master is primary", "master", "db1", "", snapOf(healthy()), 0, 200, "", ""},
		{"primary of a standby", "primary", "db2", "", snapOf(healthy()), 0, 503, "not a writable primary", ""},
		{"primary of a dead node", "primary", "db1", "", snapOf(dead), 0, 503, "does not answer", ""},
		{"writable but not recorded", "primary", "db1", "", snapOf(otherRecorded), 0, 503, "records db2", ""},
		{"writable, no record at all", "primary", "db1", "", snapOf(noRecord), 0, 503, "records no primary", ""},
		{"primary whose write probe failed", "primary", "db1", "", unwritable("db1"), 0, 503, "does not take writes: heartbeat on db1: FATAL", ""},
		{"readiness of a primary whose write probe failed", "readiness", "db1", "", unwritable("db1"), 0, 503, "", ""},
		{"read-only of a primary whose write probe failed", "read-only", "db1", "", unwritable("db1"), 0, 200, "", ""},
		{"a failed probe of another node", "primary", "db1", "", unwritable("db2"), 0, 200, "", ""},
		{"stale observation", "primary", "db1", "", snapOf(healthy()), 2500 * time.Millisecond, 503, "not observing", ""},
		{"no observation", "primary", "db1", "", nil, 0, 503, "no observation", ""},
		{"unknown node", "primary", "db9", "", snapOf(healthy()), 0, 503, "not a node", ""},
		{"unknown check", "leaderz", "db1", "", snapOf(healthy()), 0, 503, "no check", ""},
		{"replica streaming", "replica", "db2", "", snapOf(healthy()), 0, 200, "", ""},
		{"replica within lag", "replica", "db2", "lag=2MB", snapOf(healthy()), 0, 200, "", ""},
		{"replica within lag in bytes", "replica", "db2", "lag=1048576", snapOf(healthy()), 0, 200, "", ""},
		{"replica beyond lag", "replica", "db2", "lag=512kB", snapOf(healthy()), 0, 503, "more than lag=512kB", ""},
		{"replica bad lag", "replica", "db2", "lag=lots", snapOf(healthy()), 0, 503, "not a size", ""},
		{"replica not streaming", "replica", "db3", "", snapOf(healthy()), 0, 503, "does not stream", ""},
		{"replica of the primary", "replica", "db1", "", snapOf(healthy()), 0, 503, "not a standby", ""},
		{"read-only primary", "read-only", "db1", "", snapOf(healthy()), 0, 200, "", ""},
		{"read-only standby", "read-only", "db3", "", snapOf(healthy()), 0, 200, "", ""},
		{"read-only dead", "read-only", "db1", "", snapOf(dead), 0, 503, "does not answer", ""},
		{"health standby", "health", "db3", "", snapOf(healthy()), 0, 200, "", ""},
		{"health dead", "health", "db1", "", snapOf(dead), 0, 503, "", ""},
		{"liveness with a dead node", "liveness", "db1", "", snapOf(dead), 0, 200, "", ""},
		{"liveness stale", "liveness", "db1", "", snapOf(healthy()), 3 * time.Second, 503, "not observing", ""},
		{"readiness primary", "readiness", "db1", "", snapOf(healthy()), 0, 200, "", ""},
		{"readiness streaming standby", "readiness", "db2", "", snapOf(healthy()), 0, 200, "", ""},
		{"readiness idle standby", "readiness", "db3", "", snapOf(healthy()), 0, 503, "", ""},
		{"readiness unrecorded primary", "readiness", "db1", "", snapOf(otherRecorded), 0, 503, "", ""},
		{"primary whose sentinel connection ended", "primary", "db1", "", snapOf(healthy()), 0, 503, "went away after the last observation: db1: the server closed", "db1: the server closed the connection"},
		{"replica whose sentinel connection ended", "replica", "db2", "", snapOf(healthy()), 0, 503, "went away", "db2: the server closed the connection"},
		{"liveness ignores a lost connection", "liveness", "db1", "", snapOf(healthy()), 0, 200, "", "db1: the server closed the connection"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			code, body := Health(tc.check, q, tc.snap, tc.node, t0.Add(tc.age), 2*time.Second, tc.lost)
			if code != tc.want {
				t.Fatalf("%s %s?%s: %d (%s), want %d", tc.node, tc.check, tc.query, code, body.Reason, tc.want)
			}
			if code == http.StatusOK && body.Reason != "" {
				t.Errorf("200 with a reason: %q", body.Reason)
			}
			if !strings.Contains(body.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", body.Reason, tc.reason)
			}
		})
	}
}

func TestHealthLagWithoutPrimary(t *testing.T) {
	// The primary is gone: lag is measured against the most advanced
	// position observed, as Patroni measures it against the last leader's.
	s := healthy()
	s.Nodes[0] = &state.Node{Name: "db1", Error: "not running"}
	_, body := Health("replica", url.Values{}, snapOf(s), "db3", t0, 2*time.Second, "")
	if body.LagBytes == nil || *body.LagBytes != 0x2f00000-0x1000000 {
		t.Fatalf("lag of db3 against db2's receive position: %v", body.LagBytes)
	}
}

func TestHubKeepsRecordOverCatalogOutage(t *testing.T) {
	h := NewHub()
	h.Publish(snapOf(healthy()))
	out := healthy()
	out.ObservedAt = t0.Add(time.Second)
	out.Catalog = state.Catalog{Reachable: false, Error: "connection refused"}
	h.Publish(&Snapshot{Cfg: testCfg(), State: out, At: out.ObservedAt})
	code, body := Health("primary", url.Values{}, h.Latest(), "db1", t0.Add(time.Second), 2*time.Second, "")
	if code != 200 {
		t.Fatalf("the primary with the catalog away: %d %s (the last record names it)", code, body.Reason)
	}
	// An older observation does not replace a newer one.
	h.Publish(snapOf(healthy()))
	if !h.Latest().At.Equal(t0.Add(time.Second)) {
		t.Fatalf("an older snapshot replaced the newer one")
	}
}

func TestHubLostUntilObservedAgain(t *testing.T) {
	h := NewHub()
	h.Now = func() time.Time { return t0.Add(500 * time.Millisecond) }
	h.Publish(snapOf(healthy()))
	h.NodeLost("db1", t0.Add(500*time.Millisecond), "db1: the server closed the connection")
	if h.Lost("db1") == "" || h.Lost("db2") != "" {
		t.Fatalf("lost: db1 %q, db2 %q", h.Lost("db1"), h.Lost("db2"))
	}
	// An observation of the API's that started before the loss (it may
	// have read db1 alive) does not clear it; nor does the watcher's.
	early := healthy()
	early.ObservedAt = t0.Add(400 * time.Millisecond)
	h.Publish(&Snapshot{Cfg: testCfg(), State: early, At: early.ObservedAt, Own: true, started: early.ObservedAt})
	w := healthy()
	w.ObservedAt = t0.Add(450 * time.Millisecond)
	h.Publish(&Snapshot{Cfg: testCfg(), State: w, At: w.ObservedAt})
	if h.Lost("db1") == "" {
		t.Fatal("an observation started before the loss cleared it")
	}
	// One started after it does.
	later := healthy()
	later.ObservedAt = t0.Add(600 * time.Millisecond)
	h.Publish(&Snapshot{Cfg: testCfg(), State: later, At: later.ObservedAt})
	if why := h.Lost("db1"); why != "" {
		t.Fatalf("still lost after a later observation: %q", why)
	}
}
