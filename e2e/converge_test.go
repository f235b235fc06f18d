package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/state"
	"github.com/pgha/pgha/views"
)

// soonSchedule has its incremental tick at one minute two hours from
// now, and its full and differential ticks only on 29 February: the
// binary, on the real clock, finds nothing due during the test, while an
// in-process apply with the clock just past the tick finds the
// incremental due. (Two hours, not years: certificates issued now stay
// valid on that clock.)
func soonSchedule() (string, time.Time) {
	tick := time.Now().UTC().Add(2 * time.Hour).Truncate(time.Minute)
	return fmt.Sprintf(`  backup {
    repository  = "./backups"
    compression = "zstd"
    schedule {
      full         = "0 3 29 2 *"
      incremental  = "%d %d %d %d *"
      differential = "0 4 29 2 *"
    }
  }
`, tick.Minute(), tick.Hour(), tick.Day(), int(tick.Month())), tick.Add(5 * time.Minute)
}

// TestLocalBackupChainAcrossSwitchover: on PostgreSQL 15 a full is taken,
// rows are written, the primary is switched over to db2 (timeline 2), and
// `plan -detailed-exitcode` exits 0 at once: no new full. The next
// scheduled backup is an incremental whose parent is the full from
// before the switchover, read along db2's timeline history, and its
// chain restores to exactly the rows written before and after the
// switchover.
func TestLocalBackupChainAcrossSwitchover(t *testing.T) {
	t.Parallel()
	chainAcrossSwitchover(t, "local")
}

// TestDockerBackupChainAcrossSwitchover is the same on PostgreSQL 17 in
// containers: the incremental after the switchover is block-level (the
// standby summarized the WAL before it was promoted), and its chain is
// combined by pg_combinebackup and checked by pg_verifybackup.
func TestDockerBackupChainAcrossSwitchover(t *testing.T) {
	t.Parallel()
	chainAcrossSwitchover(t, "docker")
}

func chainAcrossSwitchover(t *testing.T, rt string) {
	c := newCluster(t, rt, 2)
	block, night := soonSchedule()
	c.addBlock(block)
	ctx := context.Background()

	if r := c.mustPgha("apply", "-auto-approve"); !strings.Contains(r.stdout, "+ backup.take[full]") {
		t.Fatalf("the first apply did not take a full:\n%s", r)
	}
	// The standby holds the WAL since the newest backup too (15), or
	// summarizes it (17).
	var slots int
	var summarize string
	if err := c.conn(ctx, "db2").QueryRow(ctx, "SELECT count(*), COALESCE(current_setting('summarize_wal', true), '') FROM pg_replication_slots WHERE slot_name = 'pgha_backup'").Scan(&slots, &summarize); err != nil {
		t.Fatal(err)
	}
	if rt == "local" && slots != 1 || rt == "docker" && (slots != 0 || summarize != "on") {
		t.Fatalf("standby db2 has %d backup slots and summarize_wal %q", slots, summarize)
	}
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE sw AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("not converged after the first apply:\n%s", r)
	}

	src, _ := os.ReadFile(c.file)
	c.write(strings.Replace(string(src), `primary = "db1"`, `primary = "db2"`, 1))
	r := c.mustPgha("apply", "-auto-approve")
	if !strings.Contains(r.stdout, "~ switchover[db2]") || strings.Contains(r.stdout, "backup.take") {
		t.Fatalf("switchover apply (want a switchover and no backup):\n%s", r)
	}
	if c.primary(ctx) != "db2" {
		t.Fatal("db2 is not the primary")
	}
	if _, err := c.conn(ctx, "db2").Exec(ctx, "INSERT INTO sw SELECT g FROM generate_series(1001, 1500) g"); err != nil {
		t.Fatal(err)
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 || !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("after the switchover the plan is not empty (exit %d):\n%s", r.code, r)
	}

	env := c.env()
	env.Now = func() time.Time { return night }
	var out bytes.Buffer
	pl, err := env.Run(ctx, reconcile.RunOptions{Events: views.NewHuman(&out)})
	if err != nil {
		t.Fatalf("scheduled apply: %v\n%s", err, out.String())
	}
	list, _, err := env.Backups(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("backups after the scheduled apply: %+v (%v)\n%s", list, err, out.String())
	}
	incr, full := list[0], list[1]
	var takes []plan.Action
	for _, a := range pl.Actions {
		if a.Kind == plan.BackupTake {
			takes = append(takes, a)
		}
	}
	if len(takes) != 1 || takes[0].After["type"] != "incremental" || takes[0].After["parent"] != full.ID {
		t.Fatalf("the scheduled apply planned %+v, want one incremental on %s\n%s", takes, full.ID, out.String())
	}
	if incr.Type != "incremental" || incr.Parent != full.ID || incr.Root != full.ID || incr.Status != "complete" ||
		full.Timeline != 1 || incr.Timeline != 2 || incr.Node != "db2" || full.Node != "db1" {
		t.Fatalf("incremental %+v\nfull %+v", incr, full)
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("after the incremental the plan is not empty (exit %d):\n%s", r.code, r)
	}

	if rt == "docker" {
		if incr.Format != policy.FormatIncremental || incr.StoredBytes >= full.StoredBytes {
			t.Fatalf("the incremental on PostgreSQL 17 is %q, %d bytes (the full %d)", incr.Format, incr.StoredBytes, full.StoredBytes)
		}
		restoreChain(ctx, t, c, env, list, incr.ID, 1500)
		return
	}
	// The incremental holds the WAL of both timelines and the history
	// file that leads recovery from one to the other.
	rc, err := backup.Open(backup.Dir(filepath.Join(c.dir, "backups")), incr)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(rc)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names[h.Name[len("pg_wal/"):][:8]+strings.TrimPrefix(filepath.Ext(h.Name), ".")] = true
	}
	rc.Close()
	if !names["00000001"] || !names["00000002"] || !names["00000002history"] {
		t.Fatalf("the incremental's WAL holds %v, want segments of timelines 1 and 2 and 00000002.history", names)
	}

	restoreChain(ctx, t, c, env, list, incr.ID, 1500)
}

// restoreChain restores backup id with its chain into a scratch instance
// (checked by pg_verifybackup where the runtime can) and asserts it holds
// rows rows of table sw.
func restoreChain(ctx context.Context, t *testing.T, c *cluster, env *reconcile.Env, list []state.Backup, id string, rows int) {
	t.Helper()
	chain, err := policy.Chain(list, id)
	if err != nil || len(chain) != 2 {
		t.Fatalf("chain of %s: %v (%v)", id, chain, err)
	}
	var out bytes.Buffer
	rs, err := env.StartRestored(ctx, chain, c.rt == "docker", &out)
	if err != nil {
		t.Fatalf("restore %s: %v\n%s", id, err, out.String())
	}
	defer rs.Stop()
	q := c.connPort(ctx, rs.Port)
	defer q.Close(ctx)
	var n int
	if err := q.QueryRow(ctx, "SELECT count(*) FROM sw").Scan(&n); err != nil || n != rows {
		t.Fatalf("the restored chain holds %d rows (%v), want the %d written before and after the switchover", n, err, rows)
	}
}

// TestLocalSlotRenameOneApply: renaming a standby's slot in cluster.hcl
// converges in one apply: the new slot is created, the standby streams
// through it, and the old slot is gone (no second apply needed).
func TestLocalSlotRenameOneApply(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	src, _ := os.ReadFile(c.file)
	c.write(strings.Replace(string(src), `slot = "db2_slot"`, `slot = "db2_renamed"`, 1))
	r := c.mustPgha("apply", "-auto-approve")
	for _, want := range []string{"+ slot.create[db1/db2_renamed]", "~ standby.follow[db2]", "- slot.drop[db1/db2_slot]"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("the rename's apply lacks %q:\n%s", want, r)
		}
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("after one apply the plan is not empty (exit %d):\n%s", r.code, r)
	}
	rows, err := c.conn(ctx, "db1").Query(ctx, "SELECT slot_name || ':' || active FROM pg_replication_slots ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(got, ",") != "db2_renamed:true" {
		t.Fatalf("slots on db1: %v (%v), want only db2_renamed, active", got, err)
	}
}

// TestLocalNodeRemoval: a node deleted from cluster.hcl is listed by
// status as undeclared, planned as a removal, and after one apply it is
// stopped, its slot on the primary is gone, its data directory is moved
// aside (not deleted), and the plan is empty.
func TestLocalNodeRemoval(t *testing.T) {
	t.Parallel()
	nodeRemoval(t, "local")
}

// TestDockerNodeRemoval: the same on Docker, where pgha finds the node by
// its container's labels; the removal takes the container and keeps the
// volume.
func TestDockerNodeRemoval(t *testing.T) {
	t.Parallel()
	nodeRemoval(t, "docker")
}

func nodeRemoval(t *testing.T, rt string) {
	c := newCluster(t, rt, 3)
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	src, _ := os.ReadFile(c.file)
	i := strings.Index(string(src), `  node "db3" {`)
	j := i + strings.Index(string(src[i:]), "}\n") + 2
	c.write(string(src[:i]) + string(src[j:]))

	var st struct {
		Nodes []struct {
			Name, Role string
			Running    bool
			Undeclared bool
			DataDir    string `json:"data_dir"`
		}
	}
	if err := json.Unmarshal([]byte(c.mustPgha("status", "-json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	// Locally pgha asks the found server what it is; on Docker it reports
	// the labelled container.
	wantRole, wantDir := "standby", c.dataDir("db3")
	if rt == "docker" {
		wantRole, wantDir = "unknown", "volume "+c.container("db3")
	}
	if len(st.Nodes) != 3 || st.Nodes[2].Name != "db3" || !st.Nodes[2].Undeclared || !st.Nodes[2].Running ||
		st.Nodes[2].Role != wantRole || st.Nodes[2].DataDir != wantDir || st.Nodes[0].Undeclared {
		t.Fatalf("status does not list db3 as an undeclared running node (%s, %s): %+v", wantRole, wantDir, st.Nodes)
	}
	if r := c.mustPgha("status"); !strings.Contains(r.stdout, "not in cluster.hcl") {
		t.Fatalf("status:\n%s", r)
	}
	r := c.pgha("plan", "-detailed-exitcode")
	if r.code != 2 || !strings.Contains(r.stdout, "- node.remove[db3]") || !strings.Contains(r.stdout, "- slot.drop[db1/db3_slot]") {
		t.Fatalf("the plan does not remove db3 (exit %d):\n%s", r.code, r)
	}
	if r := c.mustPgha("plan", "-delete-removed"); !strings.Contains(r.stdout, "DELETE its data") || strings.Contains(r.stdout, ".aside-") || strings.Contains(r.stdout, "volume    = \"kept\"") {
		t.Fatalf("plan -delete-removed does not say it deletes db3's data:\n%s", r)
	}
	c.mustPgha("apply", "-auto-approve")
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("after the removal the plan is not empty (exit %d):\n%s", r.code, r)
	}
	if rt == "docker" {
		if left := docker(t, "ps", "-a", "--filter", "label=io.pgha.cluster="+c.name, "--filter", "label=io.pgha.node=db3", "--format", "{{.Names}}"); left != "" {
			t.Fatalf("db3's container is still there: %s", left)
		}
		if vols := docker(t, "volume", "ls", "--filter", "label=io.pgha.cluster="+c.name, "--filter", "label=io.pgha.node=db3", "--format", "{{.Name}}"); vols == "" {
			t.Fatal("db3's volume was not kept")
		}
	} else if _, err := os.Stat(c.dataDir("db3")); !os.IsNotExist(err) {
		t.Fatalf("db3's data directory is still in place (%v)", err)
	}
	if rt == "local" {
		asideKept(t, c)
	}
	rows, err := c.conn(ctx, "db1").Query(ctx, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(got, ",") != "db2_slot" {
		t.Fatalf("slots on db1: %v (%v), want db2_slot only", got, err)
	}
	if err := json.Unmarshal([]byte(c.mustPgha("status", "-json").stdout), &st); err != nil || len(st.Nodes) != 2 {
		t.Fatalf("status after the removal: %+v (%v)", st.Nodes, err)
	}
}

// asideKept asserts db3's data directory was moved aside whole, stopped.
func asideKept(t *testing.T, c *cluster) {
	t.Helper()
	aside, _ := filepath.Glob(c.dataDir("db3") + ".aside-*")
	if len(aside) != 1 {
		t.Fatalf("db3's data was not moved aside: %v", aside)
	}
	if _, err := os.Stat(filepath.Join(aside[0], "PG_VERSION")); err != nil {
		t.Fatalf("the set-aside directory lost its data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(aside[0], "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("db3 still runs (postmaster.pid: %v)", err)
	}
}

// TestLocalBackupChainAcrossFailover: PostgreSQL 15, a full, rows, then
// the primary is killed and `pgha failover` promotes db2 without planning
// a full (db2 received the full's end and kept the backup slot); the next
// incremental, taken on db2, has the full as parent and restores with the
// rows from before and after the failover.
func TestLocalBackupChainAcrossFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)
	block, _ := soonSchedule()
	c.addBlock(block)
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE sw AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	var lsn string
	if err := p.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	s := c.conn(ctx, "db2")
	eventually(t, 10*time.Second, func() error {
		var ok bool
		if err := s.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&ok); err != nil || !ok {
			return fmt.Errorf("db2 has not replayed %s (%v)", lsn, err)
		}
		return nil
	})
	c.kill("db1")
	r := c.mustPgha("failover", "-auto-approve")
	if !strings.Contains(r.stdout, "~ failover[db2]") || strings.Contains(r.stdout, "backup.take") {
		t.Fatalf("failover (want a promotion and no backup):\n%s", r)
	}
	if _, err := c.conn(ctx, "db2").Exec(ctx, "INSERT INTO sw SELECT g FROM generate_series(1001, 1500) g"); err != nil {
		t.Fatal(err)
	}
	c.mustPgha("backup", "-type", "incremental")
	env := c.env()
	list, _, err := env.Backups(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("backups: %+v (%v)", list, err)
	}
	incr, full := list[0], list[1]
	if incr.Type != "incremental" || incr.Parent != full.ID || incr.Timeline != 2 || incr.Node != "db2" || full.Timeline != 1 {
		t.Fatalf("incremental %+v\nfull %+v", incr, full)
	}
	restoreChain(ctx, t, c, env, list, incr.ID, 1500)
}
