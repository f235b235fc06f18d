package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/state"
	"github.com/pgha/pgha/views"
)

// TestDockerBackup runs the backup chain on PostgreSQL 17 in containers:
// full, writes, incremental, writes, differential, writes, incremental.
// On 17 the incrementals are block-level (BASE_BACKUP INCREMENTAL against
// the parent's manifest, summarize_wal turned on by the full), smaller
// than the full, and every backup restores in a scratch container (chains
// combined there by pg_combinebackup, checked by pg_verifybackup) to
// exactly the rows and content of its moment.
func TestDockerBackup(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "docker", 2)
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n  }\n")
	if r := c.mustPgha("apply", "-auto-approve"); !strings.Contains(r.stdout, "+ backup.take[full]") {
		t.Fatalf("the first apply took no full backup:\n%s", r)
	}
	env := c.env()
	ctx := context.Background()
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, `CREATE TABLE wk (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	moments := map[string]moment{}
	var taken []state.Backup
	for k, typ := range []string{"full", "incremental", "differential", "incremental"} {
		if _, err := p.Exec(ctx, `INSERT INTO wk SELECT g, 'r' || g FROM generate_series($1::int, $1::int + 4999) g`, k*5000); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Exec(ctx, `UPDATE wk SET v = v || '+' WHERE id % 89 = $1`, k); err != nil {
			t.Fatal(err)
		}
		m := snapshot(ctx, t, p)
		var out bytes.Buffer
		b, err := env.Backup(ctx, typ, views.NewHuman(&out))
		if err != nil {
			t.Fatalf("%s backup: %v\n%s", typ, err, out.String())
		}
		wantFormat := map[string]string{"full": policy.FormatBase, "incremental": policy.FormatIncremental, "differential": policy.FormatIncremental}[typ]
		if b.Format != wantFormat || b.ServerVersion < 170000 || b.ServerManifest == "" {
			t.Fatalf("%s backup on PostgreSQL 17: format %q, version %d, manifest %q", typ, b.Format, b.ServerVersion, b.ServerManifest)
		}
		moments[b.ID] = m
		taken = append(taken, b)
	}
	full, incr, diff := taken[0], taken[1], taken[2]
	if incr.Parent != full.ID || diff.Parent != full.ID || taken[3].Parent != diff.ID {
		t.Fatalf("parents: incremental %s, differential %s, incremental %s (full %s)", incr.Parent, diff.Parent, taken[3].Parent, full.ID)
	}
	if incr.StoredBytes >= full.StoredBytes {
		t.Errorf("a block-level incremental stored %d bytes, the full %d", incr.StoredBytes, full.StoredBytes)
	}

	list, _, err := env.Backups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range taken {
		ch, err := policy.Chain(list, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		rs, err := env.StartRestored(ctx, ch, true, &out)
		if err != nil {
			t.Fatalf("restore %s: %v\n%s", b.ID, err, out.String())
		}
		if !strings.Contains(out.String(), "pg_verifybackup") {
			t.Errorf("restore %s was not checked by pg_verifybackup:\n%s", b.ID, out.String())
		}
		q := c.connPort(ctx, rs.Port)
		got := snapshot(ctx, t, q)
		q.Close(ctx)
		rs.Stop()
		if got != moments[b.ID] {
			t.Errorf("restore of %s %s (chain of %d) holds %+v, its moment had %+v", b.Type, b.ID, len(ch), got, moments[b.ID])
		}
	}
	// Nothing of this cluster's scratch containers is left (other tests
	// running in parallel restore into scratch containers of their own).
	if left := docker(t, "ps", "-a", "--filter", "label=io.pgha.role=scratch", "--filter", "label=io.pgha.cluster="+c.name, "--format", "{{.Names}}"); strings.TrimSpace(left) != "" {
		t.Errorf("scratch containers left: %s", left)
	}
}
