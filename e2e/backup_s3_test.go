package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestLocalS3Backup: a cluster whose repository is a bucket of a real
// S3 server (versitygw, started here): the first apply takes a full, an
// incremental follows; both verify by restoring, the incremental restores
// into a directory with the rows of its moment, and the full restored
// elsewhere passes pg_verifybackup. A second full and retention (fulls =
// 1) expire the first chain: its stored objects are gone from the bucket,
// listed with an S3 client of the test's own, only the manifests stay as
// tombstones. No output shows the secret key. Then the time of a full to
// S3 beside one to a directory, at the same data size.
//
// The S3 tests run alone, not in parallel: their uploads (zstd, a SHA-256
// of every chunk signed over http) beside the timing-bound Docker watch
// tests starved those (make test at f58ec3e: a 50 ms poll ran 926 of 3033
// rounds).
func TestLocalS3Backup(t *testing.T) {
	srv := testenv.StartS3(t, "pgha")
	c := newCluster(t, "local", 2)
	if err := os.WriteFile(filepath.Join(c.dir, "s3.secret"), []byte(srv.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s3block := fmt.Sprintf(`    s3 {
      endpoint   = %q
      access_key = %q
      secret_key = file("./s3.secret")
    }
`, srv.Endpoint, srv.AccessKey)
	c.addBlock("  backup {\n    repository  = \"s3://pgha/clusters/e2e\"\n    compression = \"zstd\"\n" + s3block +
		"    retention {\n      fulls = 1\n    }\n  }\n")
	ctx := context.Background()
	var outputs []string
	run := func(args ...string) result {
		t.Helper()
		r := c.mustPgha(args...)
		outputs = append(outputs, r.stdout, r.stderr)
		return r
	}
	if r := run("apply", "-auto-approve"); !strings.Contains(r.stdout, "+ backup.take[full]") {
		t.Fatalf("the first apply did not take a full backup:\n%s", r)
	}
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE bk AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	run("backup", "-type", "incremental")
	var listed struct {
		Source  string         `json:"source"`
		Backups []state.Backup `json:"backups"`
	}
	if err := json.Unmarshal([]byte(run("backup", "list", "-json").stdout), &listed); err != nil || len(listed.Backups) != 2 {
		t.Fatalf("backup list: %+v (%v)", listed, err)
	}
	incr, full := listed.Backups[0], listed.Backups[1]
	if full.Type != "full" || incr.Type != "incremental" || incr.Parent != full.ID || full.Status != "complete" {
		t.Fatalf("backups: %+v", listed.Backups)
	}

	// The bucket, seen by a client of the test's own.
	s3c, err := minio.New(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), Region: srv.Region})
	if err != nil {
		t.Fatal(err)
	}
	objects := func(id string) []string {
		t.Helper()
		var out []string
		for o := range s3c.ListObjects(ctx, "pgha", minio.ListObjectsOptions{Prefix: "clusters/e2e/e2e/" + id + "/", Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			out = append(out, path.Base(o.Key))
		}
		return out
	}
	for _, b := range []state.Backup{full, incr} {
		if got := objects(b.ID); len(got) < 2 || !contains(got, "manifest.json") || !contains(got, path.Base(b.Path)) {
			t.Fatalf("the bucket holds %v of %s, want its manifest and %s", got, b.ID, path.Base(b.Path))
		}
	}

	// Both verify by restoring into a scratch instance.
	if r := run("backup", "verify", "-restore", full.ID); !strings.Contains(r.stdout, "checksum matches") {
		t.Fatalf("verify -restore of the full:\n%s", r)
	}
	if r := run("backup", "verify", "-restore", incr.ID); !strings.Contains(r.stdout, "a chain of 2") {
		t.Fatalf("verify -restore of the incremental:\n%s", r)
	}
	// The full, restored into a directory, passes pg_verifybackup against
	// the server's manifest that went to the bucket with it.
	fullDir := filepath.Join(testenv.Dir(t), "restore-full")
	run("restore", "-target-dir", fullDir, full.ID)
	bin := testenv.PGBinDir(t)
	if out, err := testenv.Command(t, filepath.Join(bin, "pg_verifybackup"), fullDir).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup of the full restored from S3: %v\n%s", err, out)
	} else {
		t.Logf("pg_verifybackup: %s", strings.TrimSpace(string(out)))
	}
	// The incremental, restored into a directory and started, holds the
	// rows of its moment.
	incrDir := filepath.Join(testenv.Dir(t), "restore-incr")
	run("restore", "-target-dir", incrDir, incr.ID)
	port := testenv.FreePort(t)
	pgctl := filepath.Join(bin, "pg_ctl")
	start := testenv.Command(t, pgctl, "-D", incrDir, "-l", filepath.Join(incrDir, "restore.log"), "-w",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=", port), "start")
	if out, err := start.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(incrDir, "restore.log"))
		t.Fatalf("start the restored incremental: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() { testenv.Command(t, pgctl, "-D", incrDir, "-m", "immediate", "stop").Run() })
	rows := c.connPort(ctx, port)
	eventually(t, 30e9, func() error {
		var rec bool
		if err := rows.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
			return fmt.Errorf("still recovering (%v)", err)
		}
		return nil
	})
	var n int
	if err := rows.QueryRow(ctx, "SELECT count(*) FROM bk").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("the restored incremental has %d rows (%v), want 1000", n, err)
	}

	// A byte flipped where the server keeps the incremental (its POSIX
	// directory, as a failing disk would) fails verify, named by its S3
	// location.
	victim := filepath.Join(srv.Root, "pgha", "clusters", "e2e", filepath.FromSlash(incr.Path))
	data, err := os.ReadFile(victim)
	if err != nil || len(data) == 0 {
		t.Fatalf("the server's file of %s: %d bytes, %v", incr.Path, len(data), err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := c.pgha("backup", "verify", incr.ID); r.code == 0 || !strings.Contains(r.stderr, "checksum mismatch") ||
		!strings.Contains(r.stderr, "s3://pgha/clusters/e2e/"+incr.Path) {
		t.Fatalf("verify of an incremental corrupted in the bucket:\n%s", r)
	} else {
		t.Logf("verify of the corrupted incremental: %s", strings.TrimSpace(r.stderr))
	}

	// A second full; retention keeps one chain: the first goes.
	run("backup", "-type", "full")
	if r := run("plan"); !strings.Contains(r.stdout, "backup.expire["+full.ID+"]") {
		t.Fatalf("the plan does not expire the first chain:\n%s", r)
	}
	run("apply", "-auto-approve")
	for _, b := range []state.Backup{full, incr} {
		if got := objects(b.ID); len(got) != 1 || got[0] != "manifest.json" {
			t.Fatalf("after expiry the bucket still holds %v of %s, want only its manifest (the tombstone)", got, b.ID)
		}
		obj, err := s3c.GetObject(ctx, "pgha", "clusters/e2e/e2e/"+b.ID+"/manifest.json", minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var m state.Backup
		err = json.NewDecoder(obj).Decode(&m)
		obj.Close()
		if err != nil || m.Status != "expired" {
			t.Fatalf("the tombstone of %s: %+v (%v)", b.ID, m, err)
		}
	}
	if err := json.Unmarshal([]byte(run("backup", "list", "-json").stdout), &listed); err != nil {
		t.Fatal(err)
	}
	full2 := listed.Backups[0]
	if full2.Type != "full" || full2.Status != "complete" || !contains(objects(full2.ID), path.Base(full2.Path)) {
		t.Fatalf("the kept full: %+v, objects %v", full2, objects(full2.ID))
	}
	outputs = append(outputs, run("plan", "-json").stdout, run("status").stdout)
	for _, o := range outputs {
		if strings.Contains(o, srv.SecretKey) {
			t.Fatalf("an output shows the S3 secret key:\n%s", o)
		}
	}

	// The figure: a full to S3 and one to a directory, same data, in turn.
	if _, err := p.Exec(ctx, "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) AS pad FROM generate_series(1, 2000000) g"); err != nil {
		t.Fatal(err)
	}
	var size string
	p.QueryRow(ctx, "SELECT pg_size_pretty(pg_database_size(current_database()))").Scan(&size)
	timeFull := func() time.Duration {
		t.Helper()
		t0 := time.Now()
		run("backup", "-type", "full")
		return time.Since(t0)
	}
	src, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	dirFile := strings.Replace(strings.Replace(string(src), s3block, "", 1), `"s3://pgha/clusters/e2e"`, `"./backups"`, 1)
	var toS3, toDir []time.Duration
	for range 2 {
		c.write(string(src))
		toS3 = append(toS3, timeFull())
		c.write(dirFile)
		toDir = append(toDir, timeFull())
	}
	t.Logf("full backup of a %s database (zstd), 2 rounds in turn on a shared machine: to S3 (versitygw on loopback) %v, to a directory %v", size, toS3, toDir)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestLocalS3PointInTimeRestore: the continuous WAL archive streams into
// the bucket (segments, partial segments flushed every 200 ms, the
// receiver's status object), a point-in-time restore reads the full and
// the archived WAL back from it and holds exactly the rows committed
// before the instant, and a restore drill replays the archive from S3.
func TestLocalS3PointInTimeRestore(t *testing.T) {
	srv := testenv.StartS3(t, "pgha")
	c := newCluster(t, "local", 2)
	if err := os.WriteFile(filepath.Join(c.dir, "s3.secret"), []byte(srv.SecretKey), 0o600); err != nil {
		t.Fatal(err)
	}
	c.addBlock(fmt.Sprintf(`  backup {
    repository  = "s3://pgha/pitr"
    compression = "zstd"
    s3 {
      endpoint   = %q
      access_key = %q
      secret_key = file("./s3.secret")
    }
    archive {
      flush = "200ms"
    }
  }
`, srv.Endpoint, srv.AccessKey))
	c.mustPgha("apply", "-auto-approve")
	ctx := context.Background()
	archLog := c.startArchive(t)
	s3c, err := minio.New(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), Region: srv.Region})
	if err != nil {
		t.Fatal(err)
	}
	walObjects := func() []string {
		var out []string
		for o := range s3c.ListObjects(ctx, "pgha", minio.ListObjectsOptions{Prefix: "pitr/" + c.name + "/wal/", Recursive: true}) {
			if o.Err == nil {
				out = append(out, path.Base(o.Key))
			}
		}
		return out
	}
	eventually(t, 30*time.Second, func() error {
		if !contains(walObjects(), "status.json") {
			return fmt.Errorf("the archive has stored no status in the bucket yet\n%s", archLog())
		}
		return nil
	})
	c.mustPgha("backup")
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE pitr_writes (id int PRIMARY KEY); INSERT INTO pitr_writes SELECT generate_series(1, 300)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	instant := time.Now()
	time.Sleep(time.Second)
	if _, err := p.Exec(ctx, "INSERT INTO pitr_writes SELECT generate_series(301, 600)"); err != nil {
		t.Fatal(err)
	}
	var end string
	if err := p.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	endLSN, _ := state.ParseLSN(end)
	eventually(t, 30*time.Second, func() error {
		var l struct {
			Recoverable []state.RecoveryWindow `json:"recoverable"`
		}
		if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &l); err != nil {
			return err
		}
		for _, w := range l.Recoverable {
			if to, _ := state.ParseLSN(w.ToLSN); to >= endLSN {
				return nil
			}
		}
		return fmt.Errorf("the archive does not reach %s yet: %+v", end, l.Recoverable)
	})
	t.Logf("archive objects in the bucket: %d (%v)", len(walObjects()), walObjects())
	dir := filepath.Join(testenv.Dir(t), "pitr")
	began := time.Now()
	r := c.mustPgha("restore", "-target-dir", dir, "-to-time", instant.UTC().Format(time.RFC3339Nano))
	restored := time.Since(began)
	got, _ := startRestored(ctx, t, c, dir)
	if len(got) != 300 || !got[300] || got[301] {
		t.Fatalf("restored to %s from S3: %d rows, want exactly ids 1-300\n%s", instant.UTC().Format(time.RFC3339Nano), len(got), r.stdout)
	}
	t.Logf("point-in-time restore from S3: 300 rows, restore %s", restored.Round(time.Millisecond))
	if r := c.mustPgha("backup", "drill"); !strings.Contains(r.stdout, "passed") {
		t.Fatalf("a drill from S3 did not pass:\n%s", r)
	} else {
		t.Logf("drill: %s", strings.TrimSpace(r.stdout[strings.LastIndex(strings.TrimSpace(r.stdout), "\n")+1:]))
	}
}

// TestDockerS3Backup: on the Docker runtime (PostgreSQL 17, block-level
// incrementals) with the repository in S3: the incremental's reference
// manifest is read back from the bucket, and verify -restore streams the
// chain from the bucket into a scratch container, combines it there and
// checks it with pg_verifybackup.
func TestDockerS3Backup(t *testing.T) {
	srv := testenv.StartS3(t, "pgha")
	c := newCluster(t, "docker", 2)
	if err := os.WriteFile(filepath.Join(c.dir, "s3.secret"), []byte(srv.SecretKey), 0o600); err != nil {
		t.Fatal(err)
	}
	c.addBlock(fmt.Sprintf(`  backup {
    repository  = "s3://pgha/docker"
    compression = "zstd"
    s3 {
      endpoint   = %q
      access_key = %q
      secret_key = file("./s3.secret")
    }
  }
`, srv.Endpoint, srv.AccessKey))
	if r := c.mustPgha("apply", "-auto-approve"); !strings.Contains(r.stdout, "+ backup.take[full]") {
		t.Fatalf("the first apply took no full backup:\n%s", r)
	}
	ctx := context.Background()
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE bk AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	c.mustPgha("backup", "-type", "incremental")
	var listed struct{ Backups []state.Backup }
	if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &listed); err != nil || len(listed.Backups) != 2 {
		t.Fatalf("backup list: %+v (%v)", listed, err)
	}
	incr := listed.Backups[0]
	if incr.Type != "incremental" || incr.ServerManifest == "" {
		t.Fatalf("the incremental: %+v", incr)
	}
	r := c.mustPgha("backup", "verify", "-restore", incr.ID)
	if !strings.Contains(r.stdout, "a chain of 2") {
		t.Fatalf("verify -restore of the incremental on docker from S3:\n%s", r)
	}
	t.Logf("verify -restore: %s", strings.TrimSpace(r.stdout[strings.LastIndex(strings.TrimSpace(r.stdout), "\n")+1:]))
}
