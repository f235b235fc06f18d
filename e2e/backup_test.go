package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestLocalBackup takes a full backup, lists it from the catalog and, with
// the catalog down, from the repository, restores it into a scratch
// instance that holds exactly the rows of the moment of the backup, and
// detects a corrupted stored file.
func TestLocalBackup(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)
	src, _ := os.ReadFile(c.file)
	i := strings.LastIndex(string(src), "}")
	c.write(string(src[:i]) + "  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n  }\n}\n")
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE bk AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	r := c.mustPgha("backup")
	if !strings.Contains(r.stdout, "complete") {
		t.Fatalf("backup output:\n%s", r)
	}
	if _, err := p.Exec(ctx, "INSERT INTO bk SELECT g FROM generate_series(1001, 1500) g"); err != nil {
		t.Fatal(err)
	}

	var listed struct {
		Source  string         `json:"source"`
		Backups []state.Backup `json:"backups"`
	}
	if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &listed); err != nil {
		t.Fatal(err)
	}
	if listed.Source != "catalog" || len(listed.Backups) != 1 {
		t.Fatalf("backup list: %+v", listed)
	}
	b := listed.Backups[0]
	if b.Type != "full" || b.Status != "complete" || b.StoredBytes <= 0 || b.DatabaseBytes <= b.StoredBytes ||
		!strings.HasPrefix(b.Checksum, "sha256:") || b.StartLSN == "" || b.StopLSN == "" || b.Timeline != 1 || b.Node != "db1" {
		t.Fatalf("backup record: %+v", b)
	}

	// pgha's own drill: checksum, restore into a scratch instance, start, query.
	r = c.mustPgha("backup", "verify", "-restore", b.ID)
	if !strings.Contains(r.stdout, "checksum matches") || !strings.Contains(r.stdout, "restored into a scratch instance, started, and answered") {
		t.Fatalf("verify -restore:\n%s", r)
	}

	// pgha restore into a new directory: it holds the rows of the backup's moment.
	repo := filepath.Join(c.dir, "backups")
	scratch := filepath.Join(testenv.Dir(t), "restore")
	if r := c.pgha("restore", "-target-dir", c.dataDir("db1"), b.ID); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("restore over a node's data was not refused:\n%s", r)
	}
	c.mustPgha("restore", "-target-dir", scratch, b.ID)
	port := testenv.FreePort(t)
	pgctl := filepath.Join(testenv.PGBinDir(t), "pg_ctl")
	start := testenv.Command(t, pgctl, "-D", scratch, "-l", filepath.Join(scratch, "restore.log"), "-w",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=", port), "start")
	if out, err := start.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(scratch, "restore.log"))
		t.Fatalf("start the restored backup: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() { testenv.Command(t, pgctl, "-D", scratch, "-m", "immediate", "stop").Run() })
	rows := c.connPort(ctx, port)
	var n int
	if err := rows.QueryRow(ctx, "SELECT count(*) FROM bk").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("the restored backup has %d rows (%v), want the 1000 of its moment", n, err)
	}

	// A corrupted stored file is detected and named.
	path := filepath.Join(repo, b.Path)
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 0xff
	os.WriteFile(path, data, 0o600)
	if _, err := backup.Open(repo, b); !errors.Is(err, backup.ErrChecksum) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corruption not detected: %v", err)
	}
	if r := c.pgha("backup", "verify", "-restore", b.ID); r.code == 0 || !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "checksum mismatch") {
		t.Fatalf("verify of a corrupted backup:\n%s", r)
	}

	// With the catalog down, the repository's manifests still list it.
	if pid, err := os.ReadFile(filepath.Join(c.dir, "data", "redis", "redis.pid")); err == nil {
		exec.Command("kill", strings.TrimSpace(string(pid))).Run()
	}
	eventually(t, 10e9, func() error {
		var l struct{ Source string }
		json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &l)
		if l.Source != "repository" {
			return fmt.Errorf("listed from %q", l.Source)
		}
		return nil
	})
}
