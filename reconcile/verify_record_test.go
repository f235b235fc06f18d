package reconcile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// TestVerifyRecorded: `pgha backup verify` writes its result on the
// backup's record in a real Redis catalog — passed, then, once the stored
// file is corrupted, failed with the reason — and changes nothing else of
// the record; the repository's manifest stays as it was, and the plan
// sees no catalog drift in the verify fields. A repair of the record from
// the manifest keeps the last verify; a verify cut short records
// nothing, as does one that finds no repository (no backup block);
// without a catalog the output says the result is not recorded.
func TestVerifyRecorded(t *testing.T) {
	r := testenv.StartRedis(t)
	repo := t.TempDir()
	e, c := fakeEnv(t, "db1", "  backup {\n    method = \"logical\"\n    repository = \""+repo+"\"\n  }\n  catalog \"redis\" {\n    address = \""+r.Addr+"\"\n  }", nil)
	c.runAs("db1")
	attachCatalog(e, r.Addr)
	defer e.Catalog.Close()
	clock := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	e.Now = func() time.Time { return clock }
	ctx := context.Background()

	b, err := e.Backup(ctx, "full", nil)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	manifest := filepath.Join(repo, b.Cluster, b.ID, "manifest.json")
	before, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatalf("the backup's manifest: %v", err)
	}
	record := func() state.Backup {
		t.Helper()
		list, err := e.Catalog.Backups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			if r.ID == b.ID {
				return r
			}
		}
		t.Fatalf("the catalog lost backup %s: %+v", b.ID, list)
		return state.Backup{}
	}

	clock = clock.Add(time.Hour)
	if err := e.VerifyBackup(ctx, b.ID, false, nil); err != nil {
		t.Fatalf("verify: %v", err)
	}
	got := record()
	if got.Verify != "passed" || got.VerifyMode != state.VerifyRead || !got.VerifiedAt.Equal(clock) {
		t.Fatalf("after a verify that passed, the record says %q %q at %v", got.Verify, got.VerifyMode, got.VerifiedAt)
	}
	if got.Status != "complete" || got.Checksum != b.Checksum || got.Path != b.Path || !got.Started.Equal(b.Started) {
		t.Errorf("the verify changed more than its fields: %+v, was %+v", got, b)
	}
	if after, _ := os.ReadFile(manifest); string(after) != string(before) {
		t.Errorf("the verify rewrote the manifest:\n%s", after)
	}
	s := e.Observe(ctx)
	for _, a := range plan.Build(e.Cfg, s).Actions {
		if a.Kind == plan.BackupRecord {
			t.Errorf("the verify fields look like catalog drift: %s (%s)", a.ID, a.Reason)
		}
	}

	// The stored file no longer matches its manifest.
	if err := os.WriteFile(filepath.Join(repo, filepath.FromSlash(b.Path)), []byte("not what was stored"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	if err := e.VerifyBackup(ctx, b.ID, false, nil); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("verify of a corrupted backup: %v", err)
	}
	got = record()
	if !strings.HasPrefix(got.Verify, "failed: verify "+b.ID) || !strings.Contains(got.Verify, "checksum mismatch") ||
		got.VerifyMode != state.VerifyRead || !got.VerifiedAt.Equal(clock) {
		t.Fatalf("after a verify that failed, the record says %q %q at %v", got.Verify, got.VerifyMode, got.VerifiedAt)
	}
	if passed, ok := got.Verified(); passed || !ok {
		t.Errorf("Verified() = %v, %v for %q", passed, ok, got.Verify)
	}

	// A record repaired from its manifest (here: the catalog says failed,
	// the manifest complete) keeps its last verify.
	drift := got
	drift.Status = "failed"
	if err := e.Catalog.PutBackup(ctx, drift); err != nil {
		t.Fatal(err)
	}
	if err := e.recordBackup(ctx, "*"); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if rep := record(); rep.Status != "complete" || rep.Verify != got.Verify || !rep.VerifiedAt.Equal(got.VerifiedAt) {
		t.Errorf("the repair from the manifest: status %q, verify %q at %v; want complete and the last verify kept", rep.Status, rep.Verify, rep.VerifiedAt)
	}

	// A verify cut short says nothing about the backup.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	clock = clock.Add(time.Hour)
	_ = e.VerifyBackup(cctx, b.ID, false, nil)
	if rep := record(); rep.VerifiedAt.Equal(clock) {
		t.Errorf("a cancelled verify was recorded: %q at %v", rep.Verify, rep.VerifiedAt)
	}

	// A file without a backup block names no repository: an error, not
	// a panic, and nothing recorded.
	bk := e.Cfg.Backup
	e.Cfg.Backup = nil
	clock = clock.Add(time.Hour)
	if err := e.VerifyBackup(ctx, b.ID, false, nil); err == nil || !strings.Contains(err.Error(), "no backup block") {
		t.Errorf("verify without a backup block: %v", err)
	}
	if rep := record(); rep.VerifiedAt.Equal(clock) {
		t.Errorf("a verify that found no repository was recorded: %q", rep.Verify)
	}
	e.Cfg.Backup = bk

	// No catalog: nowhere to record, and the output says so.
	e.Catalog.Close()
	e.Catalog, e.store = nil, nil
	var evs eventLog
	_ = e.VerifyBackup(ctx, b.ID, false, &evs)
	said := false
	for _, ev := range evs {
		if m, ok := ev.(report.Message); ok && strings.Contains(m.Text, "the result is not recorded") {
			said = true
		}
	}
	if !said {
		t.Errorf("a verify without a catalog did not say its result is not recorded: %v", evs)
	}
}
