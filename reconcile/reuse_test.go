package reconcile

import (
	"context"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
)

// TestQuickReuse: a quick observation may reuse a read for quickReuse,
// not longer; an apply (forget) drops every read; an Env made without
// Open keeps nothing.
func TestQuickReuse(t *testing.T) {
	t0 := time.Now()
	c := &installedTLS{}
	if _, ok := c.get("db1", t0); ok {
		t.Fatal("a read before any was made")
	}
	c.put("db1", installedFingerprints{cert: "c1", ca: "a1"}, t0)
	cases := []struct {
		node string
		at   time.Time
		ok   bool
	}{
		{"db1", t0, true},
		{"db1", t0.Add(quickReuse - time.Millisecond), true},
		{"db1", t0.Add(quickReuse), false},
		{"db2", t0, false},
	}
	for _, tc := range cases {
		r, ok := c.get(tc.node, tc.at)
		if ok != tc.ok || (ok && (r.cert != "c1" || r.ca != "a1")) {
			t.Errorf("get(%s, +%s) = %+v, %t; want reuse %t", tc.node, tc.at.Sub(t0), r, ok, tc.ok)
		}
	}
	c.forget()
	if _, ok := c.get("db1", t0); ok {
		t.Error("a read reused after forget (an apply)")
	}
	var none *installedTLS
	none.put("db1", installedFingerprints{}, t0)
	none.forget()
	if _, ok := none.get("db1", t0); ok {
		t.Error("a nil cache reused a read")
	}
}

// forgetting is a Runtime that records that Execute told it to forget
// what quick observations reuse (the Docker runtime's set-aside lists).
type forgetting struct {
	Runtime
	forgot bool
}

func (f *forgetting) forgetReused() { f.forgot = true }

// TestExecuteForgetsReusedReads: an apply, even one that stops before
// its first action, drops the reads quick observations reuse, its Env's
// installed TLS and its runtime's, so that the next observation reads
// what the actions may have changed.
func TestExecuteForgetsReusedReads(t *testing.T) {
	rt := &forgetting{}
	e := &Env{Cfg: &config.Cluster{Name: "forget"}, Runtime: rt, installed: &installedTLS{}}
	now := time.Now()
	e.installed.put("db1", installedFingerprints{cert: "c1", ca: "a1"}, now)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.Execute(ctx, &plan.Plan{Actions: []plan.Action{{ID: "node.start[db1]", Kind: plan.NodeStart, Node: "db1"}}}, nil)
	if _, ok := e.installed.get("db1", now); ok {
		t.Error("the installed TLS read survived the apply")
	}
	if !rt.forgot {
		t.Error("the runtime was not told to forget its reused reads")
	}
}
