package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgha/pgha/internal/testenv"
)

// The acceptance scenarios of watch mode (issue 11), on both runtimes:
// each runs under a client writing through a multi-host connection string
// (target_session_attrs=read-write) and a poll of every node every 50 ms
// that fails the test if two nodes ever accept writes at once.

func TestLocalWatch(t *testing.T) {
	t.Parallel()
	watchScenario(t, "local")
}

// TestDockerWatch and TestDockerWatchLoad do not run in parallel with
// the other scenarios: what they time is pgha's detection and failover,
// and beside another test's containers on two cores Docker observations
// timed out ("db2: does not answer" when the failover was planned, a
// SIGKILLed apply converged after 28.6 s, db1 unreachable under pgbench:
// make test at df9bb0d, with e2e already run after the other packages).
// TestDockerHAProxy and TestDockerSync, made non-parallel for the same
// reason, passed in that run. Go runs the non-parallel tests first, one
// at a time; e2e takes about five minutes longer.
func TestDockerWatch(t *testing.T) {
	watchScenario(t, "docker")
}

func TestLocalWatchLoad(t *testing.T) {
	t.Parallel()
	watchLoad(t, "local")
}

func TestDockerWatchLoad(t *testing.T) {
	watchLoad(t, "docker")
}

// The watch tests' failover policy: the defaults spelled out (a lost
// primary is declared after 3 failed checks a second apart) and a
// maximum_lag small enough that what it allows to lose is countable.
const (
	watchInterval  = time.Second
	watchThreshold = 3
	watchMaxLag    = 64 * 1024
	policyRestart  = "check_interval = \"1s\"\nfailure_threshold = 3\nmaximum_lag = \"64kB\"\nprimary_crash = \"restart\""
	watchDefaults  = "heal = true\nrejoin = \"rewind\"\nconfig = \"apply\""
	policyFailover = "check_interval = \"1s\"\nfailure_threshold = 3\nmaximum_lag = \"64kB\"\nprimary_crash = \"failover\""
)

// watchScenario runs the acceptance scenarios one after the other on one
// three-node cluster and one watcher (two for a while), the writer and the
// poll running throughout. Each subtest starts from a settled cluster and
// leaves one.
func watchScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 3)
	outer := c // watchers that outlive a subtest are started on it
	ctx := context.Background()
	c.setPolicy(policyRestart, watchDefaults)
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE ha_writes (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	ww := c.startWatch("w1")
	ww.waitLog(t, 0, "leader acquired", nil, 20*time.Second)
	w := startAppWriter(ctx, c)
	w.waitAcks(t, 50, 15*time.Second)
	poll := startPrimaryPoll(ctx, c)

	var figures []string
	// Acknowledged ids found missing so far, each reported once: by the
	// failover that lost it within maximum_lag, or as the error of the
	// subtest that lost it.
	reported := map[int]bool{}
	newLost := func(t *testing.T, node string) []int {
		t.Helper()
		// A node just restarted may still refuse a connection or two
		// (seen on Docker: a TLS handshake reset right after a restart).
		eventually(t, 20*time.Second, func() error {
			cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s connect_timeout=2", c.port(node), c.sslParams()))
			cfg.Password = superPW
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err == nil {
				conn.Close(ctx)
			}
			return err
		})
		var out []int
		for _, id := range missing(ctx, t, c.with(t), node, ids(w.snapshot())) {
			if !reported[id] {
				reported[id] = true
				out = append(out, id)
			}
		}
		return out
	}
	defer func() {
		for _, f := range figures {
			t.Log(f)
		}
	}()
	figure := func(format string, args ...any) {
		figures = append(figures, fmt.Sprintf(format, args...))
	}

	// settled waits for one writable primary with every other node
	// streaming from it and nothing left for the watcher to do (a record,
	// a slot, a rejoin), all seen together, and returns the primary.
	settled := func(t *testing.T) string {
		t.Helper()
		c := c.with(t)
		var p string
		eventually(t, 90*time.Second, func() error {
			var err error
			if p, err = c.streamingPrimary(ctx); err != nil {
				return err
			}
			if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
				return fmt.Errorf("not converged:\n%s", r.stdout)
			}
			return nil
		})
		return p
	}
	// noneSince fails t if the watchers logged any of msgs after their marks.
	noneSince := func(t *testing.T, marks map[*watchProc]int, msgs ...string) {
		t.Helper()
		for wp, m := range marks {
			for _, msg := range msgs {
				if r := wp.records(m, msg, nil); len(r) > 0 {
					t.Errorf("watcher %s logged %q: %s", wp.name, msg, r[0].Line)
				}
			}
		}
	}
	// lostWithin checks the acknowledged writes missing on the new
	// primary against what maximum_lag allows, and remembers them.
	lostWithin := func(t *testing.T, primary string, perWrite float64) []int {
		t.Helper()
		lost := newLost(t, primary)
		allowed := int(float64(watchMaxLag) / perWrite)
		if len(lost) > allowed {
			t.Errorf("%d acknowledged writes lost; maximum_lag (64 KiB) allows %d at %.0f bytes of WAL each: %v", len(lost), allowed, perWrite, lost)
		}
		return lost
	}
	// failedOver waits for the failover from p and returns the new
	// primary, checking that the other standby follows it and that the
	// choice is in the catalog's history.
	failedOver := func(t *testing.T, wp *watchProc, m int, p string, t0 time.Time) (string, logRec) {
		t.Helper()
		c := c.with(t)
		fo := wp.waitLog(t, m, "failover", map[string]string{"from": p}, 30*time.Second)
		to := fo.field("to")
		if to == p || !slices.Contains(c.names, to) {
			t.Fatalf("failover from %s to %q: %s", p, to, fo.Line)
		}
		// Decided, the failover (fence, promote, re-point) takes seconds, not
		// the minute a fence waiting on a stopped server took.
		done := wp.waitLog(t, m, "apply", map[string]string{"operation": "failover"}, 120*time.Second)
		// 30 s, not a tighter bound: that regression took a minute, and on
		// two loaded cores a good failover has taken 12 s.
		if done.field("outcome") != "done" || done.Time.Sub(fo.Time) > 30*time.Second {
			t.Errorf("the failover decided at %s ended %s later: %s", fo.Time.Format("15:04:05.000"), done.Time.Sub(fo.Time).Round(time.Millisecond), done.Line)
		}
		for _, n := range c.names {
			if n != p && n != to {
				c.streamsFrom(ctx, t, n, to, 30*time.Second)
			}
		}
		// The decision is logged before it runs; the history has it once done.
		cat := c.catalog()
		defer cat.Close()
		eventually(t, 15*time.Second, func() error {
			events, err := cat.History(ctx, 20)
			if err != nil {
				return err
			}
			for _, ev := range events {
				if ev.Kind == "failover" && ev.Time.After(t0.Add(-time.Second)) && strings.Contains(ev.Message, to) {
					return nil
				}
			}
			return fmt.Errorf("the catalog's history has no failover to %s since the incident: %+v", to, events)
		})
		return to, fo
	}
	// rejoined waits until the former primary streams from the new one.
	rejoined := func(t *testing.T, wp *watchProc, m int, old, to string, t0 time.Time) {
		t.Helper()
		c := c.with(t)
		rj := wp.waitLog(t, m, "rejoin", map[string]string{"node": old}, 90*time.Second)
		c.streamsFrom(ctx, t, old, to, 60*time.Second)
		figure("  %s rejoined (%s) %s after the incident", old, rj.field("method"), rj.Time.Sub(t0).Round(time.Millisecond))
	}

	t.Run("a stopped standby is restarted", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		victim := otherThan(c.names, p)[1]
		m := ww.mark()
		t0 := time.Now()
		c.pgctl(victim, "stop", "-m", "fast")
		c.streamsFrom(ctx, t, victim, p, 30*time.Second)
		h := ww.waitLog(t, m, "heal", nil, 5*time.Second)
		if !strings.Contains(h.Line, victim) {
			t.Errorf("the heal record does not name %s: %s", victim, h.Line)
		}
		// The heal's apply ends once it saw the standby stream; the
		// container is removed only then, else that apply waits for a
		// node that is gone (a minute, its streaming timeout).
		ww.waitLog(t, m, "apply", map[string]string{"outcome": "done"}, 30*time.Second)
		figure("stopped standby %s: streaming again %s after pg_ctl stop", victim, time.Since(t0).Round(time.Millisecond))
		if rt == "docker" {
			m := ww.mark()
			t0 := time.Now()
			docker(t, "rm", "-f", c.container(victim))
			c.streamsFrom(ctx, t, victim, p, 60*time.Second)
			ww.waitLog(t, m, "heal", nil, 5*time.Second)
			figure("removed container %s: recreated and streaming %s after docker rm -f", victim, time.Since(t0).Round(time.Millisecond))
		}
		noneSince(t, map[*watchProc]int{ww: m}, "primary lost", "failover")
	})

	t.Run("primary paused shorter than the detection window: no failover", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		m := ww.mark()
		resume := c.pause(p)
		time.Sleep(watchInterval * 3 / 2)
		resume()
		// Well past the window: a failover started by the pause would show.
		time.Sleep(watchInterval * (watchThreshold + 3))
		noneSince(t, map[*watchProc]int{ww: m}, "primary lost", "failover", "restart in place")
		if !c.writable(ctx, p) {
			t.Fatalf("%s is no longer the writable primary after a 1.5 s pause", p)
		}
		figure("paused %s 1.5 s: no failover (%d \"primary suspect\" records)", p, len(ww.records(m, "primary suspect", nil)))
	})

	t.Run("kill -9 of the primary, primary_crash = restart: restarted in place, nothing lost", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		m := ww.mark()
		t0 := time.Now()
		c.killPostmaster(p)
		ww.waitLog(t, m, "restart in place", map[string]string{"node": p}, 30*time.Second)
		g := w.gapAfter(t, t0, c.port(p), 30*time.Second)
		if r := ww.records(m, "restart in place", map[string]string{"outcome": "failed"}); len(r) > 0 {
			t.Errorf("the restart in place failed: %s", r[0].Line)
		}
		noneSince(t, map[*watchProc]int{ww: m}, "failover")
		if lost := newLost(t, p); len(lost) > 0 {
			t.Errorf("%d acknowledged writes lost by a restart in place: %v", len(lost), lost)
		}
		settled(t)
		figure("kill -9 %s, primary_crash = restart: %s, 0 lost", p, g)
	})

	t.Run("kill -9 of the primary, primary_crash = failover: failover, the third follows, the old primary rejoins", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		m := ww.mark()
		c.setPolicy(policyFailover, watchDefaults)
		ww.waitLog(t, m, "config changed", nil, 10*time.Second)
		perWrite := w.walPerWrite(ctx, t, p)
		m = ww.mark()
		t0 := time.Now()
		c.killPostmaster(p)
		ww.waitLog(t, m, "primary lost", map[string]string{"node": p}, 30*time.Second)
		to, fo := failedOver(t, ww, m, p, t0)
		g := w.gapAfter(t, t0, c.port(to), 30*time.Second)
		lost := lostWithin(t, to, perWrite)
		rejoined(t, ww, m, p, to, t0)
		noneSince(t, map[*watchProc]int{ww: m}, "restart in place")
		figure("kill -9 %s, primary_crash = failover: failover to %s logged %s after the kill, %s, %d lost (%.0f B of WAL a write); reasons against: %s",
			p, to, fo.Time.Sub(t0).Round(time.Millisecond), g, len(lost), perWrite, fo.field("reasons_against"))
		c.declare(to) // the file follows the cluster, for the scenarios below
	})

	t.Run("kill -9 of the primary, then of the new one: two failovers, no switchover resumed", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		m := ww.mark()
		c.setPolicy(policyFailover, watchDefaults) // as the scenario above left it, unless it failed early
		perWrite := w.walPerWrite(ctx, t, p)
		t0 := time.Now()
		c.killPostmaster(p)
		to, _ := failedOver(t, ww, m, p, t0)
		lost := lostWithin(t, to, perWrite)
		rejoined(t, ww, m, p, to, t0)
		// The file still declares p, a running standby of to now: the
		// catalog records to (the failover's generation) and no
		// switchover intent. Killing to leaves what an interrupted
		// switchover from to back to p would leave, without its intent:
		// a crash, failed over again (primary_crash = "failover").
		for _, n := range c.names {
			if n != to {
				c.streamsFrom(ctx, t, n, to, 30*time.Second)
			}
		}
		perWrite = w.walPerWrite(ctx, t, to)
		m2 := ww.mark()
		t1 := time.Now()
		c.killPostmaster(to)
		to2, fo2 := failedOver(t, ww, m2, to, t1)
		g := w.gapAfter(t, t1, c.port(to2), 30*time.Second)
		lost2 := lostWithin(t, to2, perWrite)
		rejoined(t, ww, m2, to, to2, t1)
		noneSince(t, map[*watchProc]int{ww: m}, "switchover", "restart in place")
		figure("kill -9 %s, failover to %s (%d lost), then kill -9 %s with cluster.hcl still declaring %s: failover to %s logged %s after the kill, %s, %d lost, no switchover",
			p, to, len(lost), to, p, to2, fo2.Time.Sub(t1).Round(time.Millisecond), g, len(lost2))
		c.declare(to2)
	})

	t.Run("primary paused longer than the detection window: fenced, then failover", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		perWrite := w.walPerWrite(ctx, t, p)
		m := ww.mark()
		t0 := time.Now()
		resume := c.pause(p)
		to, fo := failedOver(t, ww, m, p, t0)
		g := w.gapAfter(t, t0, c.port(to), 30*time.Second)
		resume()
		// Continued, the old primary must not take a write: it was fenced
		// before the promotion (stopped, or killed, while paused).
		time.Sleep(2 * time.Second)
		if c.writable(ctx, p) {
			t.Errorf("%s accepts writes after being continued: it was not fenced", p)
		}
		cat := c.catalog()
		defer cat.Close()
		events, err := cat.History(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		var fenced, promoted time.Time
		for _, ev := range events {
			switch {
			case ev.Kind == "node.fence" && ev.Details["node"] == p && ev.Time.After(t0):
				fenced = ev.Time
			case ev.Kind == "failover" && ev.Time.After(t0):
				promoted = ev.Time
			}
		}
		if fenced.IsZero() || promoted.IsZero() || fenced.After(promoted) {
			t.Errorf("the history does not show %s fenced before the promotion (fence %v, failover %v): %+v", p, fenced, promoted, events)
		}
		lost := lostWithin(t, to, perWrite)
		rejoined(t, ww, m, p, to, t0)
		figure("SIGSTOP %s: failover to %s logged %s after the pause, %s, %d lost", p, to, fo.Time.Sub(t0).Round(time.Millisecond), g, len(lost))
		c.declare(to)
	})

	t.Run("catalog stopped: no failover while it is away, resumes when back", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		perWrite := w.walPerWrite(ctx, t, p)
		m := ww.mark()
		back := c.stopCatalog(ctx)
		ww.waitLog(t, m, "catalog unreachable", nil, 15*time.Second)
		c.killPostmaster(p)
		away := time.Now()
		time.Sleep(watchInterval * (watchThreshold + 5))
		noneSince(t, map[*watchProc]int{ww: m}, "failover", "restart in place")
		for _, n := range c.names {
			if c.writable(ctx, n) {
				t.Errorf("%s is writable while the catalog is away and %s is dead", n, p)
			}
		}
		m2 := ww.mark()
		backAt := time.Now()
		how := back()
		// The catalog is back: the watcher acts again and replaces the
		// dead primary.
		eventually(t, 30*time.Second, func() error { return c.catalogUp(ctx) })
		to, fo := failedOver(t, ww, m2, p, backAt)
		lost := lostWithin(t, to, perWrite)
		rejoined(t, ww, m2, p, to, backAt)
		figure("catalog away %s with %s dead: no failover; back (%s): failover to %s %s later, %d lost",
			backAt.Sub(away).Round(time.Millisecond), p, how, to, fo.Time.Sub(backAt).Round(time.Millisecond), len(lost))
		c.declare(to)
	})

	t.Run("two watchers: exactly one failover per lost primary", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		// The subtest before edited cluster.hcl: the leader kept its lease
		// over the reload (giving it up for a moment let a second watcher
		// started then lead, seen on Docker), so the second one, started
		// now, finds it held.
		leads(t, ww)
		w2 := outer.startWatch("w2")
		nl := w2.waitLog(t, 0, "not leader", nil, 20*time.Second)
		if len(w2.records(0, "leader acquired", nil)) > 0 {
			t.Fatalf("the second watcher acquired the lease the first holds:\n%s", w2.tail(20))
		}
		perWrite := w.walPerWrite(ctx, t, p)
		m1, m2 := ww.mark(), w2.mark()
		t0 := time.Now()
		c.killPostmaster(p)
		to, _ := failedOver(t, ww, m1, p, t0)
		lost := lostWithin(t, to, perWrite)
		rejoined(t, ww, m1, p, to, t0)
		time.Sleep(watchInterval * watchThreshold)
		n1, n2 := len(ww.records(m1, "failover", nil)), len(w2.records(m2, "failover", nil))
		if n1+n2 != 1 {
			t.Errorf("%d failovers logged by the leader and %d by the other watcher for one lost primary", n1, n2)
		}
		if n := len(w2.records(0, "leader acquired", nil)); n > 0 {
			t.Errorf("the second watcher acquired the lease %d times while the first held it", n)
		}
		c.declare(to)
		// The leader stops (releasing its lease): the other acts in its place.
		ww.stop(t)
		ww = w2
		stopped := time.Now()
		victim := otherThan(c.names, to)[0]
		m2 = w2.mark()
		c.pgctl(victim, "stop", "-m", "fast")
		w2.waitLog(t, m2, "leader acquired", nil, 20*time.Second)
		w2.waitLog(t, m2, "heal", nil, 20*time.Second)
		c.streamsFrom(ctx, t, victim, to, 30*time.Second)
		figure("two watchers (the second: not leader, held by %s): one failover to %s, %d lost; the first stopped, the second restarted %s %s later",
			nl.field("holder"), to, len(lost), victim, time.Since(stopped).Round(time.Millisecond))
	})

	t.Run("cluster.hcl edited to another primary: switchover; an invalid edit changes nothing", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		target := otherThan(c.names, p)[0]
		m := ww.mark()
		t0 := time.Now()
		c.declare(target)
		ww.waitLog(t, m, "config changed", nil, 10*time.Second)
		g := w.gapAfter(t, t0, c.port(target), 60*time.Second)
		if np := settled(t); np != target {
			t.Fatalf("primary after the edit is %s, want %s", np, target)
		}
		if lost := newLost(t, target); len(lost) > 0 {
			t.Errorf("the switchover lost %d acknowledged writes: %v", len(lost), lost)
		}
		noneSince(t, map[*watchProc]int{ww: m}, "failover")
		figure("cluster.hcl edited to %s: switched over, %s, 0 lost", target, g)

		good, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		m = ww.mark()
		other := otherThan(c.names, target)[0]
		bad := strings.Replace(string(good), `primary = "`+target+`"`, `primary = "`+other+`"`, 1)
		bad = strings.Replace(bad, `  replication {`, "  replication {\n    user = 42 +\n", 1)
		c.write(bad)
		inv := ww.waitLog(t, m, "config invalid", nil, 10*time.Second)
		if !regexp.MustCompile(`cluster\.hcl:\d+:\d+`).MatchString(inv.Line) {
			t.Errorf("the invalid edit's record has no file:line:col: %s", inv.Line)
		}
		time.Sleep(watchInterval * 3)
		noneSince(t, map[*watchProc]int{ww: m}, "apply", "failover", "config changed")
		if !c.writable(ctx, target) || c.writable(ctx, other) {
			t.Errorf("the invalid edit moved the primary away from %s", target)
		}
		c.write(string(good))
	})

	t.Run("pgha apply SIGKILLed mid-switchover: the watcher converges", func(t *testing.T) {
		c := c.with(t)
		p := settled(t)
		target := otherThan(c.names, p)[0]
		// Stop the watcher so that the apply, not it, starts the switchover.
		ww.stop(t)
		c.declare(target)
		cmd := c.command(context.Background(), "apply", "-auto-approve")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		planned := make(chan struct{})
		var printed strings.Builder
		go func() {
			sc := bufio.NewScanner(out)
			fired := false
			for sc.Scan() {
				printed.WriteString(sc.Text() + "\n")
				if !fired && strings.HasPrefix(sc.Text(), "Plan: ") {
					fired = true
					close(planned)
				}
			}
			if !fired {
				close(planned)
			}
		}()
		<-planned
		// The lock is held: a watcher started now observes and waits.
		nw := outer.startWatch("w3")
		time.Sleep(150 * time.Millisecond)
		killed := time.Now()
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the apply was not killed mid-switchover (%v):\n%s", err, printed.String())
		}
		c.noSecret("the killed apply", printed.String())
		ww = nw
		eventually(t, 60*time.Second, func() error {
			if !c.writable(ctx, target) {
				return fmt.Errorf("%s is not the primary yet", target)
			}
			if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
				return fmt.Errorf("not converged:\n%s", r.stdout)
			}
			return nil
		})
		// How long is a figure, not an assertion (the 60 s above is the
		// liveness bound): the lock's TTL (9 s) at most, a check interval,
		// then the switchover's own time, which under load took 14 s
		// (converged 20 s after the kill, beside other tests' containers).
		took := time.Since(killed)
		settled(t)
		if lost := newLost(t, target); len(lost) > 0 {
			t.Errorf("%d acknowledged writes lost: %v", len(lost), lost)
		}
		busy := len(nw.records(0, "lock busy", nil))
		figure("apply SIGKILLed 150 ms into the switchover to %s: converged by the watcher %s after the kill (%d \"lock busy\" records)", target, took.Round(time.Millisecond), busy)
	})

	acked := w.finish()
	two := poll.finish(t)
	if len(two) > 0 {
		t.Errorf("two writable primaries seen %d times, first: %s", len(two), two[0])
	}
	final := settled(t)
	if lost := newLost(t, final); len(lost) > 0 {
		t.Errorf("%d acknowledged writes missing on %s beyond those the subtests reported: %v", len(lost), final, lost)
	}
	figure("writer: %d acknowledged writes, %d lost in all", len(acked), len(reported))
	ww.stop(t)
}

// leads checks that the watcher holds the leader lease: its last record
// about leadership is "leader acquired", none since says it lost the
// lease or found another leader. An edit of cluster.hcl that keeps the
// catalog keeps the lease (reconcile's keepLease): the subtest before
// edited the file, and a second watcher started now must not lead. A
// reload of a file written just before is let happen first.
func leads(t *testing.T, wp *watchProc) {
	t.Helper()
	time.Sleep(1500 * time.Millisecond)
	var last logRec
	for _, r := range wp.records(0, "", nil) {
		switch r.Msg {
		case "leader acquired", "leader lost", "not leader":
			last = r
		}
	}
	if last.Msg != "leader acquired" {
		t.Fatalf("watcher %s does not hold the leader lease (last: %q):\n%s", wp.name, last.Msg, wp.tail(20))
	}
}

// otherThan returns the names other than n, in order.
func otherThan(names []string, n string) []string {
	var out []string
	for _, x := range names {
		if x != n {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// watchLoad: two minutes of pgbench at full CPU on the primary (four
// clients, two threads) while the watcher checks every second: no
// failover, no restart, the primary keeps its role.
func watchLoad(t *testing.T, rt string) {
	c := newCluster(t, rt, 2)
	ctx := context.Background()
	c.setPolicy(policyRestart, "")
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE ha_writes (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	ww := c.startWatch("w1")
	ww.waitLog(t, 0, "leader acquired", nil, 20*time.Second)
	w := startAppWriter(ctx, c)
	w.waitAcks(t, 50, 15*time.Second)
	poll := startPrimaryPoll(ctx, c)

	pgbench := func(args ...string) string {
		t.Helper()
		dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s", c.port("db1"), c.sslParams())
		cmd := exec.Command(filepath.Join(testenv.PGBinDir(t), "pgbench"), append(args, dsn)...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+superPW)
		b, err := cmd.CombinedOutput()
		c.noSecret("pgbench", string(b))
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	pgbench("-i", "-q", "-s", "10")
	m := ww.mark()
	start := time.Now()
	out := pgbench("-c", "4", "-j", "2", "-T", "120", "-n")
	took := time.Since(start)
	noneSince := []string{"primary lost", "failover", "restart in place"}
	for _, msg := range noneSince {
		if r := ww.records(m, msg, nil); len(r) > 0 {
			t.Errorf("under pgbench the watcher logged %q: %s", msg, r[0].Line)
		}
	}
	if !ww.running() {
		t.Fatalf("the watcher exited under load:\n%s", ww.tail(30))
	}
	if !c.writable(ctx, "db1") {
		t.Fatal("db1 is no longer the writable primary after pgbench")
	}
	acked := w.finish()
	two := poll.finish(t)
	if len(two) > 0 {
		t.Errorf("two writable primaries seen %d times, first: %s", len(two), two[0])
	}
	if m := missing(ctx, t, c, "db1", acked); len(m) > 0 {
		t.Errorf("%d acknowledged writes missing: %v", len(m), m)
	}
	tps := regexp.MustCompile(`tps = [0-9.]+`).FindString(out)
	t.Logf("pgbench -c 4 -j 2 for %s: %s; %d \"primary suspect\" records, no failover; writer %d acks",
		took.Round(time.Second), tps, len(ww.records(m, "primary suspect", nil)), len(acked))
	ww.stop(t)
}
