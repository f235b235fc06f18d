package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/netcut"
	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/providers/redis"
)

// portCut cuts a node's PostgreSQL port off on lo (internal/netcut) for
// the test: the undo runs at cleanup even when the test fails, and so does
// a sweep of every rule of this test binary's tag, and of the tags of
// test binaries that died before their cleanup.
func portCut(t *testing.T) *netcut.Cutter {
	t.Helper()
	cut, err := netcut.New("pgha-e2e")
	if err != nil {
		t.Fatal(err)
	}
	if tags, err := cut.SweepDead(); err != nil {
		t.Fatalf("remove the cuts of dead test binaries: %v", err)
	} else if len(tags) > 0 {
		t.Logf("removed the iptables rules left by %s", strings.Join(tags, ", "))
	}
	t.Cleanup(func() {
		// After the undos (cleanups run last first): only a failed
		// undo leaves anything of this test's ports.
		if n, err := cut.Sweep(); err != nil {
			t.Errorf("remove the iptables rules tagged %s: %v", cut.Tag, err)
		} else if n > 0 {
			t.Logf("removed %d iptables rules tagged %s left behind", n, cut.Tag)
		}
	})
	return cut
}

// postmasterGone polls pid every 20 ms and returns when it has exited
// (zero after d).
func postmasterGone(pid int, d time.Duration) time.Time {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if st, err := proc.Read(pid); errors.Is(err, os.ErrNotExist) || err == nil && st.Exited() {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}
}

// TestLocalAgentCutOff: issue 14's "primary cut off from everything", with
// the set-up of TestLocalAgentPartition (three local nodes, synchronous
// replication with one synchronous standby required, primary_crash =
// "failover", an agent on every node, db1's in a network namespace, a
// writing client through a multi-host connection string and a 50 ms
// commit probe of every node). db1's host is cut off from the authority
// (iptables in its namespace) and db1's PostgreSQL from every client,
// standby and the watcher (iptables DROP of its port on lo, to and from):
//
//   - db1 acknowledges no write later than self_fence after the cut; as
//     the probe cannot reach it, the fence itself is asserted: db1's
//     agent logs it, its postmaster is gone within self_fence (and a
//     small margin for the poll) of the cut, and standby.signal is
//     written;
//   - the watcher fails over to a standby of the recorded synchronous set
//     only after db1's member lease is gone, and after db1's postmaster;
//   - no acknowledged write is lost, never two nodes acknowledge commits;
//   - once the cut heals, db1 rejoins as a standby streaming from the new
//     primary and the probe, which now reaches it, gets no commit
//     acknowledged by it.
//
// What this emulation does not cut: db1's own outgoing connections
// (its WAL receiver, once rejoined, connects from an ephemeral port),
// and the local runtime's reach into db1's data directory and processes,
// through which the watcher may rewind and start db1 as a standby while
// the cut lasts. Neither can make db1 take a write.
func TestLocalAgentCutOff(t *testing.T) {
	ac := newAgentCluster(t)
	c, cat, agents, ww := ac.cluster, ac.cat, ac.agents, ac.ww
	ctx := context.Background()
	cut := portCut(t)

	w := startAppWriter(ctx, c)
	probe := startCommitProbe(ctx, c)
	defer probe.finish()
	if p := ac.settled(t); p != "db1" {
		t.Fatalf("the primary is %s, want db1", p)
	}
	w.waitAcks(t, 50, 15*time.Second)
	_, rec, _, err := cat.Observe(ctx)
	if err != nil || rec == nil || !rec.Sync.Confirmed() {
		t.Fatalf("no confirmed synchronous set recorded before the cut: %+v (%v)", rec, err)
	}
	syncSet := rec.Sync.Standbys
	pm := c.postgresPids("db1")[0]

	// The cut: db1's host's way to the authority (the agent's clock
	// starts there), then db1's port (clients, standbys, watcher). Every
	// bound counts from t0, before the first rule: a cut that takes long
	// on a loaded machine only makes them stricter.
	m, am := ww.mark(), agents["db1"].mark()
	t0 := time.Now()
	ac.h.setCut(true)
	defer ac.h.setCut(false)
	undo, err := cut.Cut(c.port("db1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := undo(); err != nil {
			t.Error(err)
		}
	})
	cutTook := time.Since(t0)

	goneCh := make(chan time.Time, 1)
	go func() { goneCh <- memberGone(ctx, t, cat, "db1", 3*selfFence) }()
	pmCh := make(chan time.Time, 1)
	go func() { pmCh <- postmasterGone(pm, 3*selfFence) }()

	fence := agents["db1"].waitLog(t, am, "fence", map[string]string{"node": "db1"}, 2*selfFence)
	if fence.field("outcome") != "stopped" || fence.field("lease_lost") != "true" {
		t.Errorf("db1's agent fenced for another reason or failed: %s", fence.Line)
	}
	pmGone := <-pmCh
	if pmGone.IsZero() {
		t.Fatalf("db1's postmaster %d still ran %s after the cut", pm, 3*selfFence)
	}
	const margin = 300 * time.Millisecond // the poll, and the scheduling of a loaded machine
	if d := pmGone.Sub(t0); d > selfFence+margin {
		t.Errorf("db1's postmaster was gone %s after the cut, later than self_fence %s (+%s)", d, selfFence, margin)
	}
	if _, err := os.Stat(filepath.Join(c.dataDir("db1"), "standby.signal")); err != nil {
		t.Errorf("db1 was fenced without standby.signal: %v", err)
	}
	gone := <-goneCh
	if gone.IsZero() {
		t.FailNow()
	}

	fo := ww.waitLog(t, m, "failover", map[string]string{"from": "db1"}, 60*time.Second)
	to := fo.field("to")
	if !slices.Contains(syncSet, to) {
		t.Errorf("the watcher promoted %s, not in the recorded synchronous set %v", to, syncSet)
	}
	// A failover refused because a standby of the synchronous set does
	// not answer (a loaded machine) is the safety check at work; the
	// watcher tries again at its next check.
	ww.waitLog(t, m, "apply", map[string]string{"operation": "failover", "outcome": "done"}, 60*time.Second)
	refused := 0
	for _, r := range ww.records(m, "apply", map[string]string{"operation": "failover"}) {
		if strings.HasPrefix(r.field("outcome"), "refused") {
			refused++
		}
	}
	// The local runtime still reaches db1's files and processes: the
	// watcher promotes once it sees db1 stopped and marked by its agent,
	// lease or no lease (agentGate), never while its postmaster runs.
	if !fo.Time.After(pmGone) {
		t.Errorf("the watcher promoted %s at %s, while db1's postmaster still ran (gone at %s)", to,
			fo.Time.Format("15:04:05.000"), pmGone.Format("15:04:05.000"))
	}
	waited := "no wait for the lease (the runtime saw db1 fenced)"
	if waits := ww.records(m, "failover waits", map[string]string{"node": "db1"}); len(waits) > 0 {
		waited = "waited for the lease from " + waits[0].Time.Sub(t0).Round(time.Millisecond).String()
	}
	g := w.gapAfter(t, t0, c.port(to), 60*time.Second)

	// db1's last acknowledged write since the cut, to the probe or the
	// writer: the write in flight at the cut at most.
	lastDB1 := func(since time.Time) time.Time {
		last, _ := probe.lastAck("db1", since)
		for _, a := range w.snapshot() {
			if a.port == c.port("db1") && a.at.After(since) && a.at.After(last) {
				last = a.at
			}
		}
		return last
	}
	stopped := time.Duration(0)
	if last := lastDB1(t0); !last.IsZero() {
		stopped = last.Sub(t0)
	}
	if stopped > selfFence {
		t.Errorf("db1 acknowledged a write %s after the cut, later than self_fence %s", stopped, selfFence)
	}
	if two := probe.twoWriters(t0); two != "" {
		t.Fatalf("two nodes acknowledged commits: %s", two)
	}
	acked := ids(w.snapshot())
	if lost := missing(ctx, t, c, to, acked); len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged writes missing on %s: %v", len(lost), len(acked), to, lost)
	}

	// The heal: db1's port and its host's way to the authority. Its agent
	// takes the lease back and records its fence; db1 rejoins.
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	ac.h.setCut(false)
	healed := time.Now()
	agents["db1"].waitLog(t, am, "recorded", map[string]string{"node": "db1"}, 30*time.Second)
	evs, err := cat.History(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e redis.Event) bool { return e.Kind == "agent.fence" && e.Details["node"] == "db1" }) {
		t.Errorf("no agent.fence of db1 in the catalog history: %+v", evs)
	}
	if p := ac.settled(t); p != to {
		t.Fatalf("settled on %s, want %s", p, to)
	}
	c.streamsFrom(ctx, t, "db1", to, 10*time.Second)
	rejoined := time.Since(healed)
	// The probe reaches db1 again and is refused as by a standby.
	var refusals int
	eventually(t, 10*time.Second, func() error {
		refusals = 0
		for _, a := range probe.since(healed) {
			if a.node == "db1" && !a.ok && strings.Contains(a.err, "read-only transaction") {
				refusals++
			}
		}
		if refusals < 10 {
			return fmt.Errorf("%d commits on db1 refused as read-only since the heal", refusals)
		}
		return nil
	})
	if last := lastDB1(t0.Add(selfFence)); !last.IsZero() {
		t.Errorf("db1 acknowledged a write at %s, %s after the cut (healed %s after the cut)", last.Format("15:04:05.000"),
			last.Sub(t0).Round(time.Millisecond), healed.Sub(t0).Round(time.Millisecond))
	}
	if two := probe.twoWriters(t0); two != "" {
		t.Fatalf("two nodes acknowledged commits: %s", two)
	}
	acked = w.finish()
	if lost := missing(ctx, t, c, to, acked); len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged writes missing on %s after the heal: %v", len(lost), len(acked), to, lost)
	}
	started, _ := time.Parse(time.RFC3339Nano, fence.field("started"))
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("cut from everything (both cuts in place %s after t0; load %s): self_fence %s; agent began its fence %s after the cut (the stop took %s ms), db1's postmaster gone %s after; member lease gone %s after; failover to %s (synchronous set %v) logged %s after (%d attempts refused before), %s; last write acknowledged by db1 %s after the cut; %s; healed %s after the cut, db1 streaming from %s %s after the heal, %d commits refused by db1 as a standby since, none acknowledged; 0 of %d acknowledged writes lost",
		cutTook.Round(time.Millisecond), strings.Join(strings.Fields(string(load))[:3], " "), selfFence, started.Sub(t0).Round(time.Millisecond), fence.field("took_ms"), pmGone.Sub(t0).Round(time.Millisecond),
		gone.Sub(t0).Round(time.Millisecond), to, syncSet, fo.Time.Sub(t0).Round(time.Millisecond), refused, waited, stopped.Round(time.Millisecond), g,
		healed.Sub(t0).Round(time.Millisecond), to, rejoined.Round(time.Millisecond), refusals, len(acked))
}
