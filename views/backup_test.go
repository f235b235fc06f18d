package views

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// backupTaken is what `pgha backup` reports for an incremental whose
// catalog does not answer: its lines, the backup stored, the warning
// after it, and the outcome.
func backupTaken() (state.Backup, []report.Event) {
	b := state.Backup{ID: "20261201T020000Z", Cluster: "demo", Type: "incremental", Method: "physical", Parent: "20261130T020000Z",
		Node: "db1", DatabaseBytes: 48 << 20, StoredBytes: 12 << 20, Compression: "zstd", Checksum: "sha256:abc",
		Path: "demo/20261201T020000Z.tar.zst", ServerManifest: "a large manifest", Status: "complete"}
	return b, []report.Event{
		report.Message{Text: "Backing up the WAL of db1 since full 20261130T020000Z into ./backups..."},
		report.BackupDone{Backup: b, Elapsed: 2500 * time.Millisecond},
		report.Message{Text: "Warning: the backup is complete in the repository, but the catalog could not record it (dial tcp: refused); the next apply records it."},
		report.Outcome{Operation: "backup"},
	}
}

// TestHumanBackup: `pgha backup` prints the lines it printed before it
// reported events, byte for byte (the e2e tests grep "complete" and
// "catalog could not record it"), and nothing for its outcome.
func TestHumanBackup(t *testing.T) {
	_, evs := backupTaken()
	var buf bytes.Buffer
	h := NewHuman(&buf)
	for _, ev := range evs {
		h.Report(ev)
	}
	want := "Backing up the WAL of db1 since full 20261130T020000Z into ./backups...\n" +
		"Backup 20261201T020000Z complete: 48.0 MiB read, 12.0 MiB stored (25%) in 2.5s, 19.2 MiB/s.\n" +
		"Warning: the backup is complete in the repository, but the catalog could not record it (dial tcp: refused); the next apply records it.\n"
	if buf.String() != want {
		t.Fatalf("human backup\n got %q\nwant %q", buf.String(), want)
	}
}

// TestJSONBackup: `pgha backup -json` is a stream like apply's: version
// first, its lines as log events, the backup stored as a backup_complete
// with its id, type, sizes and duration (not its server manifest), and an
// outcome last; a failed backup has no backup_complete and an errored
// outcome.
func TestJSONBackup(t *testing.T) {
	b, evs := backupTaken()
	now := time.Date(2026, 12, 1, 2, 0, 3, 0, time.UTC)
	var buf bytes.Buffer
	v := NewJSON(&buf, "1.2.3")
	v.Now = func() time.Time { return now }
	for _, ev := range evs {
		v.Report(ev)
	}
	got := parseStream(t, buf.String(), now)
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
	}
	if want := []string{TypeVersion, TypeLog, TypeBackupDone, TypeLog, TypeOutcome}; strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("types %v, want %v:\n%s", types, want, buf.String())
	}
	done := got[2]
	body, ok := done.Raw["backup"].(map[string]any)
	if !ok {
		t.Fatalf("backup_complete without its backup: %s", buf.String())
	}
	for k, want := range map[string]any{"id": b.ID, "type": "incremental", "method": "physical", "parent": b.Parent, "node": "db1",
		"database_bytes": float64(48 << 20), "stored_bytes": float64(12 << 20), "compression": "zstd", "checksum": "sha256:abc",
		"path": b.Path, "elapsed_seconds": 2.5} {
		if body[k] != want {
			t.Errorf("backup_complete %s = %v, want %v", k, body[k], want)
		}
	}
	if _, leaked := body["server_manifest"]; leaked || strings.Contains(buf.String(), "a large manifest") {
		t.Errorf("backup_complete carries the server manifest (it belongs to backup list -json): %s", buf.String())
	}
	if want := "Backup 20261201T020000Z complete: 48.0 MiB read, 12.0 MiB stored (25%) in 2.5s, 19.2 MiB/s."; done.Message != want || done.Level != "info" {
		t.Errorf("backup_complete @message %q (%s), want the text view's line %q", done.Message, done.Level, want)
	}
	if o := got[4]; o.Outcome.Operation != "backup" || o.Outcome.Status != StatusComplete || o.Message != "Backup complete." || o.Level != "info" {
		t.Errorf("outcome: %s", o.Raw)
	}

	buf.Reset()
	v = NewJSON(&buf, "1.2.3")
	v.Now = func() time.Time { return now }
	v.Report(report.Message{Text: "Backing up db1 (primary) into ./backups..."})
	v.Report(report.Outcome{Operation: "backup", Err: errors.New("stream the base backup of db1: connection reset")})
	got = parseStream(t, buf.String(), now)
	if o := got[len(got)-1]; len(got) != 3 || o.Type != TypeOutcome || o.Outcome.Status != StatusErrored || o.Level != "error" ||
		o.Outcome.Error != "stream the base backup of db1: connection reset" || o.Message != "Error: stream the base backup of db1: connection reset" {
		t.Fatalf("a failed backup's stream:\n%s", buf.String())
	}
}
