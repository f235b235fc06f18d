package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChaosDetectorsFail shows that the fault campaign's instruments can
// fail, on a real three-node cluster with asynchronous replication and no
// `pgha watch` (nothing fences): a standby kept from receiving WAL (its
// primary_conninfo emptied) and promoted by hand after kill -9 of the primary lacks
// acknowledged writes, which the lost-write count finds; a second standby
// promoted by hand beside it makes two nodes acknowledge commits, which
// the probe counts, and convergence is refused.
func TestChaosDetectorsFail(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pgha")
	build := exec.Command("go", "build", "-o", bin, "./cmd/pgha")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pgha: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := startPghaWith(ctx, bin, "local", "", pghaOptions{name: "chaostest", noWatch: true})
	if err != nil {
		t.Fatalf("a three-node local cluster (PostgreSQL and redis-server installed by `make setup`): %v", err)
	}
	defer c.close()
	ch := &chaosRun{c: c, ctx: ctx}
	if err := ch.setup(); err != nil {
		t.Fatal(err)
	}
	defer ch.probe.stop()
	if _, err := ch.converge(time.Now()); err != nil {
		t.Fatalf("the new cluster: %v", err)
	}
	if p, err := findPrimary(ctx, c); err != nil || c.node(p) != "db1" {
		t.Fatalf("want db1 primary: %v %v", c.node(p), err)
	}
	w := startPacedWriter(ctx, c.connString(), chaosWriteEvery)
	if err := w.waitAcks(ctx, 50, 30*time.Second); err != nil {
		w.stop()
		t.Fatal(err)
	}
	start := time.Now()

	// db2 receives nothing while the writer goes on (its WAL receiver
	// stopped by an empty primary_conninfo); then db1 dies.
	db2, err := connectOne(ctx, c, c.pg[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"} {
		if _, err := db2.Exec(ctx, q); err != nil {
			t.Fatalf("%s on db2: %v", q, err)
		}
	}
	if err := waitFor(ctx, 30*time.Second, func() error {
		var n int
		if err := db2.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&n); err != nil || n > 0 {
			return fmt.Errorf("db2 still has a WAL receiver (%v)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db2.Close(ctx)
	n0 := len(w.stop())
	w = startPacedWriter(ctx, c.connString(), chaosWriteEvery)
	if err := w.waitAcks(ctx, 50, 30*time.Second); err != nil {
		w.stop()
		t.Fatal(err)
	}
	killTrees(postmasterPID(ch.dataDir(0)))
	acked := w.stop()
	promote(t, ctx, c, 1)
	miss, err := ch.missing(c.pg[1], acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(miss) < len(acked)/2 {
		t.Fatalf("the lost-write count found %d of the %d writes acknowledged while db2 was stopped missing on it; want most", len(miss), len(acked))
	}
	t.Logf("lost-write count: %d of %d acknowledged writes missing on db2 (%d acknowledged before its receiver stopped)", len(miss), len(acked), n0)

	// db3 promoted beside db2: two nodes acknowledge commits.
	promote(t, ctx, c, 2)
	time.Sleep(2 * time.Second)
	ch.probe.stop()
	r := &faultResult{start: start, end: time.Now()}
	ch.attribute([]*faultResult{r})
	if r.twoAck == 0 || r.twoOut < r.twoAck {
		t.Fatalf("the probe saw %d rounds with two nodes out of recovery and %d with two acknowledging commits; want some of each", r.twoOut, r.twoAck)
	}
	if err := ch.convergedNow(); err == nil || !strings.Contains(err.Error(), "both out of recovery") {
		t.Fatalf("convergence with db2 and db3 both primaries: %v", err)
	}
	t.Logf("probe: %d rounds with two nodes out of recovery, %d with two acknowledging commits, first %s", r.twoOut, r.twoAck, first(r.twoAckAt, 1)[0])
	if os.Getenv("BENCH_KEEP") != "" {
		t.Logf("kept %s", c.dir)
	}
}

// promote promotes the standby node (0-2) by hand with pg_promote(), no
// fencing of anything, and waits for it.
func promote(t *testing.T, ctx context.Context, c *pghaCluster, node int) {
	t.Helper()
	conn, err := connectOne(ctx, c, c.pg[node])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 30)").Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_promote on db%d: %v %v", node+1, ok, err)
	}
}

// The cut fault takes the catalog fault's draw (1-15 s), not one of its
// own: a seed draws the same nodes, holds and gaps with or without it.
func TestDrawCut(t *testing.T) {
	cat, cut := drawFaults(7, 50, []string{faultCatalog}), drawFaults(7, 50, []string{faultCut})
	for i := range cat {
		a, b := cat[i], cut[i]
		if b.kind != faultCut || a.node != b.node || a.hold != b.hold || a.gap != b.gap || a.hold2 != b.hold2 {
			t.Fatalf("fault %d: catalog %+v, cut %+v", i+1, a, b)
		}
		if b.hold < time.Second || b.hold > 15*time.Second {
			t.Fatalf("fault %d: cut for %s, want 1-15 s", i+1, b.hold)
		}
	}
}
