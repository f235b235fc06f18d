package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgha/pgha/state"
)

// TestLocalRestoreDrill is issue 13's acceptance for restore drills: with
// a drill schedule declared, pgha watch (which also runs the WAL archive)
// restores the newest chain into a scratch instance, replays the archive
// to its end, runs amcheck and records a passed drill with its duration;
// once that chain's stored file is corrupted, the next drill fails naming
// the file. Both show in `pgha backup list`, the metrics and the plan.
func TestLocalRestoreDrill(t *testing.T) {
	c := newCluster(t, "local", 2)
	ctx := context.Background()
	c.setPolicy(policyFailover, watchDefaults)
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n    archive {\n      flush = \"200ms\"\n    }\n  }\n")
	a := c.enableAPI(false)
	c.mustPgha("apply", "-auto-approve")
	w := c.startWatch("w1")
	defer w.stop(t)
	eventually(t, 30*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(c.dir, "backups", c.name, "wal")); err != nil {
			return fmt.Errorf("the archive has stored nothing yet: %v\n%s", err, w.tail(20))
		}
		return nil
	})
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE drill (id int PRIMARY KEY, pad text); INSERT INTO drill SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g; CREATE INDEX ON drill (pad)"); err != nil {
		t.Fatal(err)
	}
	// The full the drills restore, taken with the archive running, then
	// more WAL for them to replay.
	c.mustPgha("backup")
	for i := 0; i < 3; i++ { // three segments to replay: two complete, one partial
		if _, err := p.Exec(ctx, fmt.Sprintf("INSERT INTO drill SELECT g, 'after' FROM generate_series(%d, %d) g", 20001+1000*i, 21000+1000*i)); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if _, err := p.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Close(ctx)
	list := func() []state.Backup {
		t.Helper()
		var l struct{ Backups []state.Backup }
		if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &l); err != nil {
			t.Fatal(err)
		}
		return l.Backups
	}
	full := list()[0]
	declared := time.Now()
	src, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	c.write(strings.Replace(string(src), "    archive {\n", "    schedule {\n      drill = \"* * * * *\"\n    }\n    archive {\n", 1))

	drilled := func(after time.Time, want string) state.Backup {
		t.Helper()
		var got state.Backup
		eventually(t, 150*time.Second, func() error {
			for _, b := range list() {
				if b.ID == full.ID && b.VerifyMode == state.VerifyDrill && b.VerifiedAt.After(after) && strings.Contains(b.Verify, want) {
					got = b
					return nil
				}
			}
			return fmt.Errorf("no drill of %s recorded since %s\n%s", full.ID, after.Format(time.RFC3339), w.tail(10))
		})
		return got
	}
	ok := drilled(declared, "")
	if ok.Verify != state.VerifyPassed || ok.VerifySeconds <= 0 {
		t.Fatalf("the drill of a good chain: %q in %.1fs\n%s", ok.Verify, ok.VerifySeconds, w.tail(30))
	}
	t.Logf("drill of %s passed in %.2fs", full.ID, ok.VerifySeconds)
	if r := c.mustPgha("backup", "list"); !strings.Contains(r.stdout, "passed drill") {
		t.Errorf("backup list does not show the passed drill:\n%s", r.stdout)
	}
	m := scrapeMetrics(t, a)
	if v := m.get("pgha_backup_last_verify_success", "type", "full", "mode", "drill"); v != 1 {
		t.Errorf("pgha_backup_last_verify_success{mode=drill} = %v after a passed drill", v)
	}
	if v := m.get("pgha_backup_last_verify_duration_seconds", "type", "full", "mode", "drill"); v <= 0 {
		t.Errorf("pgha_backup_last_verify_duration_seconds{mode=drill} = %v", v)
	}

	// An archived segment in the middle of the replay read as zeros:
	// recovery would end there and promote without an error; the drill
	// sees it stopped short of the archive's end.
	segs, _ := filepath.Glob(filepath.Join(c.dir, "backups", c.name, "wal", "*", "*.zst"))
	var complete []string
	for _, s := range segs {
		if !strings.Contains(s, ".partial") {
			complete = append(complete, s)
		}
	}
	if len(complete) < 2 {
		t.Fatalf("the archive holds %d complete segments, want 2 or more: %v", len(complete), segs)
	}
	victim := complete[len(complete)-2]
	orig, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	if err := os.WriteFile(victim, enc.EncodeAll(make([]byte, 16<<20), nil), 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.pgha("backup", "drill")
	os.WriteFile(victim, orig, 0o600)
	if r.code == 0 || !strings.Contains(r.stderr, "recovery ended at") || !strings.Contains(r.stderr, filepath.Base(victim)+" cannot be read") {
		t.Errorf("a drill over a zeroed archived segment %s did not fail as stopped short:\n%s", victim, r)
	}
	t.Logf("drill over the zeroed %s: %s", filepath.Base(victim), strings.TrimSpace(r.stderr))

	// Corrupt the chain's stored file: the next drill fails and names it.
	stored := filepath.Join(c.dir, "backups", filepath.FromSlash(full.Path))
	f, err := os.OpenFile(stored, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	if _, err := f.WriteAt([]byte("corrupted by the test"), fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	bad := drilled(ok.VerifiedAt, stored)
	if !strings.HasPrefix(bad.Verify, "failed: ") || !strings.Contains(bad.Verify, stored) {
		t.Fatalf("the drill of a corrupted chain: %q, want a failure naming %s", bad.Verify, stored)
	}
	t.Logf("drill of the corrupted %s: %s (%.2fs)", full.ID, bad.Verify, bad.VerifySeconds)
	if r := c.mustPgha("backup", "list"); !strings.Contains(r.stdout, "FAILED drill") {
		t.Errorf("backup list does not show the failed drill:\n%s", r.stdout)
	}
	if v := scrapeMetrics(t, a).get("pgha_backup_last_verify_success", "type", "full", "mode", "drill"); v != 0 {
		t.Errorf("pgha_backup_last_verify_success{mode=drill} = %v after a failed drill", v)
	}
	if r := c.pgha("plan"); !strings.Contains(r.stdout, "the last restore drill failed") || !strings.Contains(r.stdout, stored) {
		t.Errorf("the plan does not warn of the failed drill:\n%s", r.stdout)
	}
}
