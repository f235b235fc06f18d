package views

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
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

// listed is what `pgha backup list` shows of a chain: a full verified by
// a restore, an incremental whose last verify failed (with a reason
// longer than the table keeps), and one never verified.
func listed() []state.Backup {
	day := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	full := state.Backup{ID: "20261130T020000Z", Cluster: "demo", Type: "full", Method: "physical", Node: "db1", Root: "20261130T020000Z",
		Started: day, Finished: day.Add(90 * time.Second), DatabaseBytes: 1 << 30, StoredBytes: 256 << 20, Compression: "zstd",
		Checksum: "sha256:f00", Path: "demo/20261130T020000Z/base.tar.zst", Status: "complete",
		VerifiedAt: day.Add(time.Hour), Verify: state.VerifyPassed, VerifyMode: state.VerifyRestore}
	incr := state.Backup{ID: "20261201T020000Z", Cluster: "demo", Type: "incremental", Method: "physical", Node: "db1",
		Parent: full.ID, Root: full.ID, Started: day.Add(24 * time.Hour), Finished: day.Add(24*time.Hour + 5*time.Second),
		DatabaseBytes: 48 << 20, StoredBytes: 12 << 20, Compression: "zstd", Checksum: "sha256:abc",
		Path: "demo/20261201T020000Z/wal.tar.zst", Status: "complete",
		VerifiedAt: day.Add(25 * time.Hour), VerifyMode: state.VerifyRead,
		Verify: "failed: verify 20261201T020000Z: backups/demo/20261201T020000Z/wal.tar.zst: checksum mismatch (manifest sha256:abc, file sha256:def)"}
	diff := state.Backup{ID: "20261202T020000Z", Cluster: "demo", Type: "differential", Method: "physical", Node: "db2",
		Parent: full.ID, Root: full.ID, Started: day.Add(48 * time.Hour), Finished: day.Add(48*time.Hour + 7*time.Second),
		DatabaseBytes: 64 << 20, StoredBytes: 16 << 20, Compression: "zstd", Checksum: "sha256:123",
		Path: "demo/20261202T020000Z/wal.tar.zst", Status: "complete"}
	return []state.Backup{diff, incr, full}
}

// windows are the recoverable windows of listed's full: timeline 1 left
// at a failover, timeline 2 the archive still writes.
func windows() []state.RecoveryWindow {
	from := time.Date(2026, 11, 30, 2, 1, 30, 0, time.UTC)
	return []state.RecoveryWindow{
		{Timeline: 2, Backup: "20261130T020000Z", FromLSN: "0/3000100", From: from, ToLSN: "2/1A004000", To: from.Add(50 * time.Hour)},
		{Timeline: 1, Backup: "20261130T020000Z", FromLSN: "0/3000100", From: from, ToLSN: "1/F0000000", To: from.Add(30 * time.Hour)},
	}
}

// TestBackupList: `pgha backup list` shows each backup's last verify in
// its VERIFIED column (result, how, when; a failure's reason cut short),
// "-" for a backup never verified; -json carries the same record whole
// under verified_at, verify and verify_mode, and leaves them out of a
// backup never verified (the fields are additive).
func TestBackupList(t *testing.T) {
	var buf bytes.Buffer
	if err := NewHuman(&buf).Backups(listed(), "catalog", windows()); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("testdata", "backup_list.txt"), buf.Bytes(), *update)
	if !strings.Contains(buf.String(), "  timeline 2 from 0/3000100 (2026-11-30 02:01:30Z, end of 20261130T020000Z) to 2/1A004000 (2026-12-02 04:01:30Z)\n") {
		t.Errorf("the recoverable window is not shown:\n%s", buf.String())
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	for i, want := range []string{"VERIFIED", "-", "FAILED read 2026-12-01 03:00Z: verify 20261201T020000Z", "passed restore 2026-11-30 03:00Z"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
	if strings.Contains(buf.String(), "file sha256:def") {
		t.Errorf("the table keeps a long reason whole:\n%s", buf.String())
	}

	buf.Reset()
	if err := NewJSON(&buf, "1.2.3").Backups(listed(), "catalog", windows()); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("testdata", "backup_list.json"), buf.Bytes(), *update)
	var got struct {
		Backups     []map[string]any       `json:"backups"`
		Recoverable []state.RecoveryWindow `json:"recoverable"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Recoverable) != 2 || got.Recoverable[0].ToLSN != "2/1A004000" || got.Recoverable[1].Timeline != 1 {
		t.Errorf("-json recoverable: %+v", got.Recoverable)
	}
	if d := got.Backups[0]; d["verify"] != nil || d["verified_at"] != nil || d["verify_mode"] != nil {
		t.Errorf("a backup never verified carries verify fields: %v", d)
	}
	if i := got.Backups[1]; i["verified_at"] != "2026-12-01T03:00:00Z" || i["verify_mode"] != "read" ||
		!strings.HasSuffix(i["verify"].(string), "file sha256:def)") {
		t.Errorf("the failed verify, in -json: %v", i)
	}
	if f := got.Backups[2]; f["verify"] != "passed" || f["verify_mode"] != "restore" {
		t.Errorf("the passed restore verify, in -json: %v", f)
	}
}
