package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/state"
)

// restoreNodeScenario restores a backup over the primary of a two-node
// cluster: a standby is refused as the target, "no" touches nothing,
// "yes" moves the old data aside and starts the primary at the backup's
// moment on a new timeline, and the next apply rejoins the standby, which
// then holds the restored rows too. On docker (PostgreSQL 17) the backup
// restored is an incremental, so the chain is combined in the container.
func restoreNodeScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 2)
	c.addBlock("  backup {\n    repository = \"./backups\"\n  }\n")
	c.mustPgha("apply", "-auto-approve")
	ctx := context.Background()
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, `CREATE TABLE wk (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, `INSERT INTO wk SELECT g, 'r' || g FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	want := snapshot(ctx, t, p)
	if rt == "docker" {
		c.mustPgha("backup", "-type", "incremental")
	} else {
		c.mustPgha("backup")
	}
	var listed struct{ Backups []state.Backup }
	if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &listed); err != nil {
		t.Fatal(err)
	}
	id := listed.Backups[0].ID
	if _, err := p.Exec(ctx, `INSERT INTO wk SELECT g, 'late' || g FROM generate_series(1001, 1500) g`); err != nil {
		t.Fatal(err)
	}
	after := snapshot(ctx, t, p)
	p.Close(ctx)

	if r := c.pgha("restore", "-node", "db2", id); r.code == 0 || !strings.Contains(r.stderr, "restore over the declared primary (db1)") {
		t.Fatalf("restore over a standby was not refused:\n%s", r)
	}
	if r := c.pghaInput("no\n", "restore", "-node", "db1", id); r.code == 0 || !strings.Contains(r.stdout, "nothing was touched") || !strings.Contains(r.stdout, "moved aside") {
		t.Fatalf("restore answered no:\n%s", r)
	}
	p = c.conn(ctx, "db1")
	if got := snapshot(ctx, t, p); got != after {
		t.Fatalf("after a refused restore db1 holds %+v, want %+v", got, after)
	}
	p.Close(ctx)

	r := c.pghaInput("yes\n", "restore", "-node", "db1", id)
	if r.code != 0 || !strings.Contains(r.stdout, "takes writes") {
		t.Fatalf("restore over db1:\n%s", r)
	}
	p = c.conn(ctx, "db1")
	if got := snapshot(ctx, t, p); got != want {
		t.Fatalf("db1 restored holds %+v, the backup's moment had %+v", got, want)
	}
	var tl int
	if err := p.QueryRow(ctx, "SELECT timeline_id FROM pg_control_checkpoint()").Scan(&tl); err != nil || tl < 2 {
		t.Errorf("the restored primary is on timeline %d (%v), want a new one", tl, err)
	}
	if !strings.Contains(r.stdout, ".before-restore-") {
		t.Errorf("the previous data directory was not moved aside:\n%s", r)
	}
	if rt == "local" {
		if aside, _ := filepath.Glob(filepath.Join(c.dir, "data", "db1.before-restore-*")); len(aside) != 1 {
			t.Errorf("the previous data directory was not kept aside: %v", aside)
		}
	} else if out := c.sh("db1", `ls -d "$D".before-restore-*`); !strings.Contains(out, "before-restore") {
		t.Errorf("the previous data directory is not in the volume: %q", out)
	}

	// The standby is ahead of the restored primary on the old timeline;
	// apply rejoins it and it follows.
	if r := c.mustPgha("apply", "-auto-approve"); !strings.Contains(r.stdout, "[db2]") {
		t.Fatalf("apply after the restore did nothing for db2:\n%s", r)
	}
	eventually(t, 30e9, func() error {
		q := c.conn(ctx, "db2")
		defer q.Close(ctx)
		if got := snapshot(ctx, t, q); got != want {
			return fmt.Errorf("db2 holds %+v, want %+v", got, want)
		}
		return nil
	})
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("not converged after the restore:\n%s", r)
	}
}

func TestLocalRestoreNode(t *testing.T) {
	t.Parallel()
	restoreNodeScenario(t, "local")
}

func TestDockerRestoreNode(t *testing.T) {
	t.Parallel()
	restoreNodeScenario(t, "docker")
}
