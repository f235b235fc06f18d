package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/etcd"
	"github.com/pgha/pgha/state"
)

// TestLocalEtcdAuthority (issue 14): a cluster whose lock, leader lease
// and record (with the synchronous set) live in a real three-member etcd
// and no Redis at all, with `pgha watch` and a writing client under
// synchronous replication (ANY 1): kill -9 of the primary fails over and
// is recorded in etcd; with one etcd member stopped the watcher keeps
// leading and a failover still works; with the etcd majority lost the
// watcher stops acting (a lost primary is not replaced, the log says
// why); with the majority back it leads again and the cluster converges.
// No acknowledged write is lost.
func TestLocalEtcdAuthority(t *testing.T) {
	// etcd first: cleanups run last-in first-out, and the cluster's
	// teardown (pgha destroy) locks in etcd.
	e := testenv.StartEtcd(t)
	c := newCluster(t, "local", 3)
	ctx := context.Background()
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	eps := `"` + strings.Join(e.Endpoints(), `", "`) + `"`
	src := regexp.MustCompile(`(?s)  catalog "redis" \{.*?\n  \}\n`).ReplaceAllLiteralString(string(b),
		fmt.Sprintf("  authority \"etcd\" {\n    endpoints = [%s]\n  }\n", eps))
	c.write(src)
	c.setSync(true)
	c.setPolicy(policyFailover, watchDefaults)
	c.mustPgha("apply", "-auto-approve")
	store, err := etcd.New(etcd.Config{Endpoints: e.Endpoints()}, c.name)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	record := func() (*state.ClusterRecord, error) {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, rec, _, err := store.Observe(rctx)
		return rec, err
	}
	if st := c.mustPgha("status"); !strings.Contains(st.stdout, "Authority: etcd") || !strings.Contains(st.stdout, "3 of 3 members answering") {
		t.Fatalf("status does not show the etcd authority:\n%s", st.stdout)
	}
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE ha_writes (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	ww := c.startWatch("w1")
	ww.waitLog(t, 0, "leader acquired", nil, 20*time.Second)

	// settled: one writable primary, the others streaming from it, and
	// etcd recording it with its confirmed synchronous set.
	settled := func(t *testing.T) string {
		t.Helper()
		var p string
		eventually(t, 120*time.Second, func() error {
			var err error
			if p, err = c.streamingPrimary(ctx); err != nil {
				return err
			}
			others := otherThan(c.names, p)
			rec, err := record()
			switch {
			case err != nil:
				return err
			case rec == nil || rec.Primary != p || len(rec.Rejoin) > 0:
				return fmt.Errorf("etcd records %+v, primary %s", rec, p)
			case !rec.Sync.Confirmed() || !slices.Equal(rec.Sync.Standbys, others):
				return fmt.Errorf("etcd's synchronous set of %s is %+v, want %v", p, rec.Sync, others)
			}
			return nil
		})
		return p
	}
	settled(t)
	w := startAppWriter(ctx, c)
	w.waitAcks(t, 50, 15*time.Second)
	var figures []string
	defer func() {
		for _, f := range figures {
			t.Log(f)
		}
	}()

	failover := func(t *testing.T, what string) {
		t.Helper()
		p := settled(t)
		w.waitAcks(t, 30, 30*time.Second)
		rec, _ := record()
		m := ww.mark()
		t0 := time.Now()
		c.killPostmaster(p)
		fo := ww.waitLog(t, m, "failover", map[string]string{"from": p}, 60*time.Second)
		to := fo.field("to")
		done := ww.waitLog(t, m, "apply", map[string]string{"operation": "failover"}, 120*time.Second)
		if done.field("outcome") != "done" {
			t.Fatalf("%s: the failover from %s did not complete: %s", what, p, done.Line)
		}
		g := w.gapAfter(t, t0, c.port(to), 60*time.Second)
		var after *state.ClusterRecord
		eventually(t, 30*time.Second, func() error {
			after, err = record()
			if err != nil || after == nil || after.Primary != to || after.Generation <= rec.Generation {
				return fmt.Errorf("etcd records %+v after the failover to %s (was generation %d)", after, to, rec.Generation)
			}
			return nil
		})
		acked := ids(w.snapshot())
		if lost := missing(ctx, t, c, to, acked); len(lost) > 0 {
			t.Fatalf("%s: %d of %d acknowledged writes missing on %s: %v", what, len(lost), len(acked), to, lost)
		}
		figures = append(figures, fmt.Sprintf("%s: kill -9 %s, failover to %s logged %s after the kill, %s; etcd generation %d -> %d",
			what, p, to, fo.Time.Sub(t0).Round(time.Millisecond), g, rec.Generation, after.Generation))
	}

	t.Run("kill -9 of the primary: failover recorded in etcd", func(t *testing.T) {
		failover(t, "etcd healthy")
	})

	t.Run("one etcd member stopped: the watcher keeps leading, a failover works", func(t *testing.T) {
		m := ww.mark()
		e.Members[0].Stop()
		defer func() {
			e.Members[0].Start()
			e.WaitHealthy(30 * time.Second)
		}()
		failover(t, "one etcd member down")
		if r := ww.records(m, "leader lost", nil); len(r) > 0 {
			t.Fatalf("the watcher lost its lease with one etcd member down: %s", r[0].Line)
		}
		if st := c.mustPgha("status"); !strings.Contains(st.stdout, "2 of 3 members answering") {
			t.Fatalf("status with one member down:\n%s", st.stdout)
		}
	})

	t.Run("etcd majority lost: the watcher stops acting; back: it leads and converges", func(t *testing.T) {
		p := settled(t)
		w.waitAcks(t, 30, 30*time.Second)
		m := ww.mark()
		t0 := time.Now()
		e.LoseMajority()
		lost := ww.waitLog(t, m, "leader lost", nil, 20*time.Second)
		figures = append(figures, fmt.Sprintf("majority lost: watcher's 'leader lost' %s after (ttl 9 s): %s",
			lost.Time.Sub(t0).Round(time.Millisecond), lost.field("error")))
		// The primary dies while etcd has no majority: nobody may
		// promote, and the watcher says why.
		c.killPostmaster(p)
		ww.waitLog(t, m, "authority unreachable", map[string]string{"primary_lost": "true"}, 60*time.Second)
		time.Sleep(5 * time.Second)
		for _, n := range c.names {
			if c.writable(ctx, n) {
				t.Fatalf("%s is writable while etcd has no majority (a failover without the authority)", n)
			}
		}
		if r := ww.records(m, "failover", nil); len(r) > 0 {
			t.Fatalf("a failover while etcd had no majority: %s", r[0].Line)
		}
		m2 := ww.mark()
		t1 := time.Now()
		e.RegainMajority()
		ww.waitLog(t, m2, "leader acquired", nil, 60*time.Second)
		np := settled(t)
		figures = append(figures, fmt.Sprintf("majority back: leader again and converged on %s %s after", np, time.Since(t1).Round(time.Millisecond)))
	})

	final := settled(t)
	acked := w.finish()
	lost := missing(ctx, t, c, final, acked)
	figures = append(figures, fmt.Sprintf("%d acknowledged writes, %d lost on the final primary %s", len(acked), len(lost), final))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged writes missing on %s: %v", len(lost), final, lost)
	}
	// destroy removes the record from etcd.
	ww.stop(t)
	c.mustPgha("destroy", "-auto-approve", "-delete-volumes")
	if rec, err := record(); err != nil || rec != nil {
		t.Fatalf("etcd after destroy: record %+v, %v", rec, err)
	}
}

// TestLocalEtcdDestroyManagedCatalog: with the authority in etcd and a
// managed Redis beside it (backups, history), pgha destroy removes the
// Redis catalog and then the record from etcd, under the lock it holds
// in etcd: destroying Redis releases nothing it needs (it exited 1 at the
// end of every bench -chaos -authority etcd: "the cluster lock was lost").
func TestLocalEtcdDestroyManagedCatalog(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	c := newCluster(t, "local", 1)
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	eps := `"` + strings.Join(e.Endpoints(), `", "`) + `"`
	src := strings.Replace(string(b), "  catalog \"redis\" {", fmt.Sprintf("  authority \"etcd\" {\n    endpoints = [%s]\n  }\n  catalog \"redis\" {", eps), 1)
	c.write(src)
	c.mustPgha("apply", "-auto-approve")
	store, err := etcd.New(etcd.Config{Endpoints: e.Endpoints()}, c.name)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, rec, _, err := store.Observe(ctx); err != nil || rec == nil {
		t.Fatalf("etcd after apply: record %+v, %v", rec, err)
	}
	r := c.pgha("destroy", "-auto-approve")
	if r.code != 0 || !strings.Contains(r.stdout, "catalog.destroy[redis]") {
		t.Fatalf("destroy with a managed catalog and the authority in etcd:\n%s", r)
	}
	if _, rec, _, err := store.Observe(ctx); err != nil || rec != nil {
		t.Fatalf("etcd after destroy: record %+v, %v", rec, err)
	}
}
