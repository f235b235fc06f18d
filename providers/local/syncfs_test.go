package local

import (
	"os"
	"path/filepath"
	"testing"
)

// syncFilesystems follows pg_wal and tablespace symlinks (as PostgreSQL's
// syncfs method does), skips a missing pg_wal, and fails on a data
// directory it cannot open: a rewind whose sync failed must not start.
func TestSyncFilesystems(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	wal := filepath.Join(root, "wal")
	ts := filepath.Join(root, "ts")
	for _, d := range []string{filepath.Join(dir, "pg_tblspc"), wal, ts} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := syncFilesystems(dir); err != nil {
		t.Fatalf("no pg_wal, no tablespace: %v", err)
	}
	if err := os.Symlink(wal, filepath.Join(dir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ts, filepath.Join(dir, "pg_tblspc", "16384")); err != nil {
		t.Fatal(err)
	}
	if err := syncFilesystems(dir); err != nil {
		t.Fatalf("pg_wal and a tablespace behind symlinks: %v", err)
	}
	if err := os.Symlink(filepath.Join(root, "gone"), filepath.Join(dir, "pg_tblspc", "16385")); err != nil {
		t.Fatal(err)
	}
	if err := syncFilesystems(dir); err != nil {
		t.Fatalf("a dangling tablespace link is skipped, as a missing pg_wal is: %v", err)
	}
	if err := syncFilesystems(filepath.Join(root, "missing")); err == nil {
		t.Fatal("syncFilesystems of a missing data directory succeeded")
	}
}
