package postgres

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// startFailingArchiver starts a server whose archive_command always fails
// (archive_mode = on, archive_command = 'false'), the state issue 13 met:
// WAL piles up in pg_wal and BASE_BACKUP with WAIT would wait for ever.
// It returns once pg_stat_archiver has counted a failure.
func startFailingArchiver(t *testing.T, ctx context.Context) (*testenv.Postgres, Endpoint, *state.Node) {
	t.Helper()
	p := testenv.StartPostgres(t)
	ep := endpoint(p)
	for _, q := range []string{`ALTER SYSTEM SET archive_mode = 'on'`, `ALTER SYSTEM SET archive_command = 'false'`} {
		if err := Exec(ctx, ep, q); err != nil {
			t.Fatal(err)
		}
	}
	out, err := testenv.Command(t, filepath.Join(p.BinDir, "pg_ctl"), "-D", p.DataDir, "-m", "fast", "-w",
		"-l", filepath.Join(filepath.Dir(p.DataDir), "log"), "restart").CombinedOutput()
	if err != nil {
		t.Fatalf("restart with archive_mode = on: %v\n%s", err, out)
	}
	// A finished segment gives the archiver something to fail on.
	if err := Exec(ctx, ep, `CREATE TABLE t AS SELECT generate_series(1, 1000) AS i`); err != nil {
		t.Fatal(err)
	}
	if err := Exec(ctx, ep, `SELECT pg_switch_wal()`); err != nil {
		t.Fatal(err)
	}
	n := &state.Node{}
	for {
		Observe(ctx, ep, n, nil)
		if n.Error != "" {
			t.Fatalf("observe: %s", n.Error)
		}
		if n.Archiver != nil && n.Archiver.FailedCount > 0 {
			return p, ep, n
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the archiver counted no failure: %+v", n.Archiver)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestArchiverFailing: the observation reports a failing archiver as
// pg_stat_archiver does, and pgha's base backup, which carries the WAL it
// needs, ends promptly instead of waiting for the archiver (WAIT false).
// With WAIT (the default, pgha before issue 13) BASE_BACKUP waits for the
// archiver as long as it fails: this test then ran into its deadline.
func TestArchiverFailing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, ep, n := startFailingArchiver(t, ctx)
	a := n.Archiver
	if a.Mode != "on" || a.ArchivedCount != 0 || a.LastArchivedWAL != "" || !a.LastArchivedTime.IsZero() {
		t.Fatalf("archiver before any success: %+v", a)
	}
	if len(a.LastFailedWAL) != 24 || a.LastFailedTime.IsZero() || time.Since(a.LastFailedTime) > time.Minute || !a.Failing() {
		t.Fatalf("failing archiver: %+v", a)
	}
	t.Logf("archiver: %d failures, last %s at %s", a.FailedCount, a.LastFailedWAL, a.LastFailedTime.Format(time.RFC3339Nano))

	// The archive's deadline is the test's: a backup that waited for the
	// archiver would fail here with the context's error.
	bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
	defer bcancel()
	var base, manifest bytes.Buffer
	began := time.Now()
	res, err := BaseBackup(bctx, ep, "archiver-failing", &base, &manifest, nil)
	took := time.Since(began)
	if err != nil {
		t.Fatalf("base backup with a failing archiver, after %s: %v", took.Round(time.Millisecond), err)
	}
	t.Logf("pgha base backup with a failing archiver: %s, %d bytes, WAL %s-%s", took.Round(time.Millisecond), base.Len(), res.Start, res.Stop)
	if res.Stop <= res.Start || manifest.Len() == 0 {
		t.Fatalf("backup result: %+v, manifest %d bytes", res, manifest.Len())
	}
	// The backup is consistent without the archive: the WAL from its
	// start to its end is in the tar.
	segs := walInTar(t, base.Bytes())
	startSeg := SegmentName(int32(res.Timeline), res.Start, 16<<20)
	stopSeg := SegmentName(int32(res.Timeline), res.Stop-1, 16<<20)
	if !segs[startSeg] || !segs[stopSeg] {
		t.Fatalf("the tar lacks WAL %s or %s; it holds %v", startSeg, stopSeg, segs)
	}

	// pg_basebackup, pgha's path for servers before 15, sends WAIT false
	// whenever it includes WAL (-X fetch here, -X stream for clones).
	began = time.Now()
	cmd := testenv.Command(t, filepath.Join(p.BinDir, "pg_basebackup"), "-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast",
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", p.User, "--no-password")
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "PGPASSWORD="+p.Password)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pg_basebackup -X fetch with a failing archiver: %v\n%s", err, stderr.String())
		}
	case <-bctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("pg_basebackup -X fetch waited for the failing archiver: %s\n%s", time.Since(began).Round(time.Millisecond), stderr.String())
	}
	t.Logf("pg_basebackup -X fetch with a failing archiver: %s", time.Since(began).Round(time.Millisecond))

	// The failures go on: the backups' segments joined the queue.
	Observe(ctx, ep, n, nil)
	if !n.Archiver.Failing() || n.Archiver.FailedCount < a.FailedCount {
		t.Fatalf("archiver after the backups: %+v", n.Archiver)
	}
}

// walInTar lists the WAL segment files in a base backup's tar.
func walInTar(t *testing.T, b []byte) map[string]bool {
	t.Helper()
	segs := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return segs
		}
		if err != nil {
			t.Fatalf("read the backup's tar: %v", err)
		}
		if dir, name := filepath.Split(h.Name); strings.TrimSuffix(dir, "/") == "pg_wal" && len(name) == 24 {
			segs[name] = true
		}
	}
}
