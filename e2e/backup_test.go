package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n  }\n")
	ctx := context.Background()
	// The first apply takes the first full: none exists.
	if r := c.mustPgha("apply", "-auto-approve"); !strings.Contains(r.stdout, "+ backup.take[full]") || !strings.Contains(r.stdout, "no full backup exists") {
		t.Fatalf("the first apply did not take a full backup:\n%s", r)
	}
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE bk AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	// -json: the stream of apply's format, the backup stored last before
	// the outcome (checked against the list below).
	r := c.mustPgha("backup", "-json")
	evs := parseEvents(t, r.stdout)
	var taken []streamEvent
	for _, e := range evs {
		if e.Type == "backup_complete" {
			taken = append(taken, e)
		}
	}
	if len(taken) != 1 || taken[0].Backup == nil || len(evs) < 3 || evs[len(evs)-2].Type != "backup_complete" ||
		!strings.HasPrefix(taken[0].Message, "Backup "+taken[0].Backup.ID+" complete: ") {
		t.Fatalf("backup -json: want one backup_complete, just before the outcome:\n%s", r.stdout)
	}
	if o := evs[len(evs)-1]; o.Outcome.Operation != "backup" || o.Outcome.Status != "complete" || o.Level != "info" {
		t.Fatalf("backup -json outcome: %s", o.line)
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
	if listed.Source != "catalog" || len(listed.Backups) != 2 {
		t.Fatalf("backup list: %+v", listed)
	}
	b := listed.Backups[0]
	if b.Type != "full" || b.Status != "complete" || b.StoredBytes <= 0 || b.DatabaseBytes <= b.StoredBytes ||
		!strings.HasPrefix(b.Checksum, "sha256:") || b.StartLSN == "" || b.StopLSN == "" || b.Timeline != 1 || b.Node != "db1" {
		t.Fatalf("backup record: %+v", b)
	}
	if got := taken[0].Backup; got.ID != b.ID || got.Type != b.Type || got.Node != b.Node || got.DatabaseBytes != b.DatabaseBytes ||
		got.StoredBytes != b.StoredBytes || got.Elapsed <= 0 {
		t.Fatalf("backup -json said %+v; the catalog records %+v", *got, b)
	}

	// pgha's own drill: checksum, restore into a scratch instance, start, query.
	r = c.mustPgha("backup", "verify", "-restore", b.ID)
	if !strings.Contains(r.stdout, "checksum matches") || !strings.Contains(r.stdout, "restored into a scratch instance, started, and answered") {
		t.Fatalf("verify -restore:\n%s", r)
	}
	// Each verify's result lands on the backup's catalog record.
	lastVerify := func(id string) state.Backup {
		t.Helper()
		var l struct{ Backups []state.Backup }
		if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &l); err != nil {
			t.Fatal(err)
		}
		for _, x := range l.Backups {
			if x.ID == id {
				return x
			}
		}
		t.Fatalf("backup list lost %s", id)
		return state.Backup{}
	}
	if v := lastVerify(b.ID); v.Verify != "passed" || v.VerifyMode != "restore" || time.Since(v.VerifiedAt) > time.Minute {
		t.Fatalf("after verify -restore, backup list says %q %q at %v", v.Verify, v.VerifyMode, v.VerifiedAt)
	}

	evs = parseEvents(t, c.mustPgha("backup", "verify", "-json", b.ID).stdout)
	if o := evs[len(evs)-1].Outcome; o.Operation != "verify" || o.Status != "complete" || !slices.ContainsFunc(evs, func(e streamEvent) bool {
		return strings.Contains(e.Message, "checksum matches")
	}) {
		t.Fatalf("verify -json: no 'checksum matches' message, or not complete:\n%s", evs[len(evs)-1].line)
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

	// Redis stops; an incremental still completes, from the repository's
	// point of view, and says the catalog missed it.
	redisPID, err := os.ReadFile(filepath.Join(c.dir, "data", "redis", "redis.pid"))
	if err != nil {
		t.Fatal(err)
	}
	exec.Command("kill", strings.TrimSpace(string(redisPID))).Run()
	eventually(t, 10e9, func() error {
		if r := c.pgha("backup", "list", "-json"); !strings.Contains(r.stdout, `"repository"`) {
			return fmt.Errorf("still listed from the catalog")
		}
		return nil
	})
	r = c.mustPgha("backup", "-type", "incremental")
	if !strings.Contains(r.stdout, "complete") || !strings.Contains(r.stdout, "catalog could not record it") {
		t.Fatalf("incremental with the catalog down:\n%s", r)
	}
	// The next apply starts the catalog (for its lock, before it plans)
	// and records what it missed.
	if r := c.mustPgha("apply", "-auto-approve"); !strings.Contains(r.stdout, "the catalog misses incremental backup") || !strings.Contains(r.stdout, "+ backup.record[") {
		t.Fatalf("apply after the catalog was down:\n%s", r)
	}
	if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &listed); err != nil {
		t.Fatal(err)
	}
	if listed.Source != "catalog" || len(listed.Backups) != 3 || listed.Backups[0].Type != "incremental" || listed.Backups[0].Parent != b.ID {
		t.Fatalf("the catalog was not repaired: %+v", listed)
	}
	if r := c.mustPgha("plan"); !strings.Contains(r.stdout, "No changes") {
		t.Fatalf("after the repair the plan is not empty:\n%s", r)
	}
	incr := listed.Backups[0]

	// The incremental restores (full + WAL to its restore point) with the
	// 1500 rows of its moment.
	scratch2 := filepath.Join(testenv.Dir(t), "restore-incr")
	// -json: every line an event, the outcome last (the API and scripts read it).
	evs = parseEvents(t, c.mustPgha("restore", "-json", "-target-dir", scratch2, incr.ID).stdout)
	if o := evs[len(evs)-1].Outcome; o.Operation != "restore" || o.Status != "complete" {
		t.Fatalf("restore -json outcome: %+v", o)
	}
	port2 := testenv.FreePort(t)
	start2 := testenv.Command(t, pgctl, "-D", scratch2, "-l", filepath.Join(scratch2, "restore.log"), "-w",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=", port2), "start")
	if out, err := start2.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(scratch2, "restore.log"))
		t.Fatalf("start the restored incremental: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() { testenv.Command(t, pgctl, "-D", scratch2, "-m", "immediate", "stop").Run() })
	rows2 := c.connPort(ctx, port2)
	eventually(t, 30e9, func() error {
		var rec bool
		if err := rows2.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
			return fmt.Errorf("still recovering (%v)", err)
		}
		return nil
	})
	if err := rows2.QueryRow(ctx, "SELECT count(*) FROM bk").Scan(&n); err != nil || n != 1500 {
		t.Fatalf("the restored incremental has %d rows (%v), want the 1500 of its moment", n, err)
	}
	if r := c.mustPgha("backup", "verify", "-restore", incr.ID); !strings.Contains(r.stdout, "a chain of 2") {
		t.Fatalf("verify -restore of the incremental:\n%s", r)
	}

	// A corrupted stored file is detected and named, also when it is the
	// full an incremental needs.
	path := filepath.Join(repo, b.Path)
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		t.Fatalf("read %s: %d bytes, %v", path, len(data), err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Open(backup.Dir(repo), b); !errors.Is(err, backup.ErrChecksum) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corruption not detected: %v", err)
	}
	for _, id := range []string{b.ID, incr.ID} {
		if r := c.pgha("backup", "verify", "-restore", id); r.code == 0 || !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "checksum mismatch") {
			t.Fatalf("verify of %s, whose full is corrupted:\n%s", id, r)
		}
	}
	r = c.pgha("backup", "verify", "-json", b.ID)
	if evs := parseEvents(t, r.stdout); r.code == 0 || evs[len(evs)-1].Outcome.Status != "errored" || !strings.Contains(evs[len(evs)-1].Outcome.Error, "checksum mismatch") {
		t.Fatalf("verify -json of a corrupted backup must end errored with the mismatch:\n%s", r)
	}
	if v := lastVerify(b.ID); !strings.HasPrefix(v.Verify, "failed: ") || !strings.Contains(v.Verify, "checksum mismatch") || v.VerifyMode != "read" {
		t.Fatalf("after a failed verify, backup list -json says %q %q", v.Verify, v.VerifyMode)
	}
	if out := c.mustPgha("backup", "list").stdout; !strings.Contains(out, "VERIFIED") || !regexp.MustCompile(b.ID+`\s.*FAILED read `).MatchString(out) {
		t.Fatalf("backup list does not show the failed verify:\n%s", out)
	}

	// With the catalog down, the repository's manifests still list them.
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
