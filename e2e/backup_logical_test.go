package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/policy"
)

// logicalScenario: with method = "logical", fulls are pg_dumpall scripts;
// incrementals are refused with the reason; the newest dump restores into
// a fresh cluster (a scratch instance) with exactly the rows and content
// of its moment, and verify -restore passes.
func logicalScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 1)
	c.addBlock("  backup {\n    repository = \"./backups\"\n    method     = \"logical\"\n  }\n")
	if r := c.mustPgha("apply", "-auto-approve"); !strings.Contains(r.stdout, "+ backup.take[full]") {
		t.Fatalf("the first apply took no full backup:\n%s", r)
	}
	ctx := context.Background()
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, `CREATE TABLE wk (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, `INSERT INTO wk SELECT g, 'r' || g FROM generate_series(1, 3000) g`); err != nil {
		t.Fatal(err)
	}
	want := snapshot(ctx, t, p)
	if r := c.mustPgha("backup"); !strings.Contains(r.stdout, "pg_dumpall") || !strings.Contains(r.stdout, "complete") {
		t.Fatalf("logical backup:\n%s", r)
	}
	if _, err := p.Exec(ctx, `DELETE FROM wk WHERE id > 1000`); err != nil {
		t.Fatal(err)
	}
	if r := c.pgha("backup", "-type", "incremental"); r.code == 0 || !strings.Contains(r.stderr, "full backups only") {
		t.Fatalf("an incremental under method logical was not refused:\n%s", r)
	}

	env := c.env()
	list, _, err := env.Backups(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("backups: %d (%v)", len(list), err)
	}
	b := list[0]
	if b.Method != "logical" || b.Format != policy.FormatLogical || !strings.HasSuffix(b.Path, "dumpall.sql.gz") {
		t.Fatalf("logical backup record: %+v", b)
	}
	if r := c.mustPgha("backup", "verify", "-restore", b.ID); !strings.Contains(r.stdout, "answered") {
		t.Fatalf("verify -restore of a logical backup:\n%s", r)
	}
	var out bytes.Buffer
	rs, err := env.StartRestored(ctx, list[:1], false, &out)
	if err != nil {
		t.Fatalf("restore %s: %v\n%s", b.ID, err, out.String())
	}
	defer rs.Stop()
	q := c.connPort(ctx, rs.Port)
	if got := snapshot(ctx, t, q); got != want {
		t.Fatalf("the restored dump holds %+v, its moment had %+v", got, want)
	}
	q.Close(ctx)

	// A script that does not apply cleanly fails verify -restore, naming
	// the file: the dump gets a statement that errors, and the catalog the
	// checksum of the damaged file, so that only psql can notice.
	path := filepath.Join(c.dir, "backups", filepath.FromSlash(b.Path))
	rc, err := backup.Open(backup.Dir(filepath.Join(c.dir, "backups")), b)
	if err != nil {
		t.Fatal(err)
	}
	sql, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Contains(sql, []byte("CREATE TABLE public.wk")) {
		t.Fatalf("read the dump: %v (%d bytes)", err, len(sql))
	}
	sql = bytes.Replace(sql, []byte("CREATE TABLE public.wk"), []byte("SELECT pgha_no_such_function();\nCREATE TABLE public.wk"), 1)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(sql)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(gz.Bytes())
	b.Checksum, b.StoredBytes = "sha256:"+hex.EncodeToString(sum[:]), int64(gz.Len())
	if err := env.Catalog.PutBackup(ctx, b); err != nil {
		t.Fatal(err)
	}
	r := c.pgha("backup", "verify", "-restore", b.ID)
	if r.code == 0 || !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "pgha_no_such_function") || strings.Contains(r.stdout, "answered") {
		t.Fatalf("verify -restore of a damaged dump (%s):\n%s", path, r)
	}
}

func TestLocalBackupLogical(t *testing.T) {
	t.Parallel()
	logicalScenario(t, "local")
}

func TestDockerBackupLogical(t *testing.T) {
	t.Parallel()
	logicalScenario(t, "docker")
}
