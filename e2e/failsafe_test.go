package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestLocalFailsafe: pgha never deletes to recover and the catalog and the
// plan never say what did not happen.
//
//   - failover, then Ctrl-C (SIGINT to pgha) while pg_rewind of the former
//     primary runs (before, and while, it writes into the target): its data
//     directory stays where it was, nothing is recorded, plan
//     -detailed-exitcode is not 0; apply then converges and only then is
//     it 0;
//   - the same with the source stopped while pg_rewind runs;
//   - a rewind that cannot work (another system) re-clones after moving the
//     old directory aside; a later plan removes it saying what it frees;
//   - with prevent_destroy the re-clone is refused and the data untouched;
//   - a declared primary with no data is cloned and switched over in one
//     plan; one that cannot be cloned is a critical finding (exit 4).
func TestLocalFailsafe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCluster(t, "local", 2)
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE fs_rows (id int PRIMARY KEY, pad text); INSERT INTO fs_rows SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	waitStreaming(ctx, t, c, "db2", "db1")

	ok := t.Run("Ctrl-C during the rejoin keeps the data and records nothing", func(t *testing.T) {
		c := c.with(t)
		failoverTo(ctx, t, c, "db2")
		gen := catalogRecord(ctx, t, c).Generation
		// Writes after the failover: WAL pg_rewind copies, so that it runs
		// long enough to be caught.
		if _, err := c.conn(ctx, "db2").Exec(ctx, "INSERT INTO fs_rows SELECT g, 'after failover' FROM generate_series(20001, 21000) g; UPDATE fs_rows SET pad = repeat('y', 500)"); err != nil {
			t.Fatal(err)
		}
		before := dirFacts(t, c.dataDir("db1"))

		// As in the report that found it: failback -no-switchover.
		r := interruptDuringRewind(t, c, "db1", true, false, nil, "failback", "-auto-approve", "-no-switchover")
		if r.code == 0 || !strings.Contains(r.stderr, "pg_rewind of db1 interrupted") || !strings.Contains(r.stderr, "stays where it was") {
			t.Fatalf("failback interrupted during pg_rewind:\n%s", r)
		}
		assertDataKept(t, c, "db1", before)
		rec := catalogRecord(ctx, t, c)
		if rec.Primary != "db2" || rec.Generation != gen {
			t.Fatalf("the catalog records %s at generation %d after the interrupted apply; want db2 at %d", rec.Primary, rec.Generation, gen)
		}
		noSwitchoverRecorded(ctx, t, c, "db1")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 2 || !strings.Contains(r.stdout, "standby.rejoin[db1]") {
			t.Fatalf("plan after the interrupted apply must show the rejoin (exit 2):\n%s", r)
		}

		c.mustPgha("apply", "-auto-approve")
		converged(ctx, t, c, "db1", 21000)
	})

	ok = ok && t.Run("Ctrl-C while pg_rewind writes into the target: the data stays; the next apply rewinds, or re-clones with it moved aside", func(t *testing.T) {
		c := c.with(t)
		failoverTo(ctx, t, c, "db2")
		if _, err := c.conn(ctx, "db2").Exec(ctx, "UPDATE fs_rows SET pad = repeat('z', 500)"); err != nil {
			t.Fatal(err)
		}
		before := dirFacts(t, c.dataDir("db1"))
		r := interruptDuringRewind(t, c, "db1", true, true, nil, "apply", "-auto-approve")
		if r.code == 0 || !strings.Contains(r.stderr, "pg_rewind of db1 interrupted") {
			t.Fatalf("apply interrupted while pg_rewind wrote:\n%s", r)
		}
		assertDataKept(t, c, "db1", before)
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 2 || !strings.Contains(r.stdout, "standby.rejoin[db1]") {
			t.Fatalf("plan after the interrupted apply must show the rejoin (exit 2):\n%s", r)
		}
		// What PostgreSQL 15 does next is its own business: a second
		// pg_rewind over a half-rewound target may work, or find no common
		// ancestor any more. Either way nothing is deleted: a re-clone
		// first moves the half-rewound directory aside.
		r = c.mustPgha("apply", "-auto-approve")
		if strings.Contains(r.stdout, "re-cloning it") {
			aside := asideDirs(t, c, "db1")
			if len(aside) != 1 {
				t.Fatalf("db1 was re-cloned but its old data is not set aside: %v\n%s", aside, r)
			}
			if _, err := os.Stat(filepath.Join(aside[0], "PG_VERSION")); err != nil {
				t.Fatalf("the set-aside directory holds no cluster: %v", err)
			}
			t.Logf("the second pg_rewind could not work; db1 was re-cloned, its half-rewound data kept in %s:\n%s", aside[0], r.stdout)
			if err := os.RemoveAll(aside[0]); err != nil { // the later subtests count set-aside directories
				t.Fatal(err)
			}
		} else {
			t.Logf("the second pg_rewind over the half-rewound target worked")
		}
		converged(ctx, t, c, "db1", 21000)
	})

	ok = ok && t.Run("source stopped mid-rewind: the action stops, the data stays", func(t *testing.T) {
		c := c.with(t)
		failoverTo(ctx, t, c, "db2")
		before := dirFacts(t, c.dataDir("db1"))
		r := interruptDuringRewind(t, c, "db1", false, false, func() {
			c.pgctl("db2", "-m", "fast", "stop") // the source goes away under pg_rewind
		}, "apply", "-auto-approve")
		if r.code == 0 || !strings.Contains(r.stderr, "pg_rewind of db1 failed; its data directory stays where it was") {
			t.Fatalf("apply with the source stopped mid-rewind:\n%s", r)
		}
		assertDataKept(t, c, "db1", before)
		// No writable node: db1, half-rewound, is not started as primary;
		// db2, the catalog's primary, stopped with no switchover intent,
		// is started again as the primary and db1 then rejoins it.
		r = c.pgha("plan", "-detailed-exitcode")
		start, rejoin := strings.Index(r.stdout, "~ node.start[db2]"), strings.Index(r.stdout, "~ standby.rejoin[db1]")
		if r.code != 2 || start < 0 || rejoin < start || !strings.Contains(r.stdout, "no switchover was under way") || strings.Contains(r.stdout, "node.start[db1]") {
			t.Fatalf("plan with the recorded primary down and db1 half-rewound (want db2 started, then db1 rejoined, exit 2):\n%s", r)
		}
		if rec := catalogRecord(ctx, t, c); rec.Primary != "db2" {
			t.Fatalf("the catalog records %s", rec.Primary)
		}
		c.pgctl("db2", "-l", filepath.Join(c.dataDir("db2"), "restart.log"), "start")
		c.mustPgha("apply", "-auto-approve")
		converged(ctx, t, c, "db1", 21000)
	})

	ok = ok && t.Run("rewind cannot work: re-cloned, old data moved aside, removed later", func(t *testing.T) {
		c := c.with(t)
		foreignCluster(t, c, "db2")
		r := c.mustPgha("apply", "-auto-approve")
		if !strings.Contains(r.stdout, "cannot work (another system identifier): re-cloning it") || !strings.Contains(r.stdout, "moved the data of db2 aside to ") {
			t.Fatalf("apply over a foreign standby:\n%s", r)
		}
		aside := asideDirs(t, c, "db2")
		if len(aside) != 1 {
			t.Fatalf("set-aside directories of db2: %v", aside)
		}
		if b, err := os.ReadFile(filepath.Join(aside[0], "fs_marker")); err != nil || string(b) != "foreign\n" {
			t.Fatalf("the old data is not in %s: %q %v", aside[0], b, err)
		}
		waitStreaming(ctx, t, c, "db2", "db1")
		r = c.pgha("plan", "-detailed-exitcode")
		if r.code != 0 || !strings.Contains(r.stdout, "Warning: db2 keeps 1 set-aside data directory") || !strings.Contains(r.stdout, "No changes.") {
			t.Fatalf("plan with a young set-aside directory:\n%s", r)
		}
		// A day later (the stamp in its name says when it was set aside):
		// the foreign cluster, which pgha did not make, is still never
		// removed by a plan.
		old := filepath.Join(c.dir, "data", "db2.aside-"+time.Now().UTC().Add(-25*time.Hour).Format("20060102T150405Z"))
		if err := os.Rename(aside[0], old); err != nil {
			t.Fatal(err)
		}
		r = c.pgha("plan", "-detailed-exitcode")
		if r.code != 0 || !strings.Contains(r.stdout, "Warning: db2 keeps 1 set-aside data directory pgha did not make") || strings.Contains(r.stdout, "data.remove") {
			t.Fatalf("plan for an old set-aside directory pgha did not make:\n%s", r)
		}
		// Had pgha made it (its marker for this cluster), the plan removes it.
		if err := os.WriteFile(filepath.Join(old, "pgha.marker"), []byte("# managed by pgha; edit cluster.hcl instead\ncluster = "+c.name+"\nnode = db2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r = c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "- data.remove["+filepath.Base(old)+"]") || !strings.Contains(r.stdout, "removing it frees ") ||
			!strings.Contains(r.stdout, "!! this discards data") {
			t.Fatalf("plan for an old set-aside directory:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if _, err := os.Stat(old); !os.IsNotExist(err) {
			t.Fatalf("%s was not removed: %v", old, err)
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	ok = ok && t.Run("prevent_destroy: no re-clone, the data untouched", func(t *testing.T) {
		c := c.with(t)
		orig, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		defer c.write(string(orig))
		c.write(strings.Replace(string(orig), `slot = "db2_slot"`, "slot = \"db2_slot\"\n    prevent_destroy = true", 1))
		foreignCluster(t, c, "db2")
		before := dirFacts(t, c.dataDir("db2"))
		r := c.pgha("plan")
		if !strings.Contains(r.stdout, "pg_rewind only (prevent_destroy: no re-clone") || !strings.Contains(r.stdout, `method   = "rewind"`) {
			t.Fatalf("plan for a protected foreign standby:\n%s", r)
		}
		r = c.pgha("apply", "-auto-approve")
		if r.code == 0 || !strings.Contains(r.stderr, "has prevent_destroy = true, so pgha does not replace its data by a re-clone") {
			t.Fatalf("apply over a protected foreign standby:\n%s", r)
		}
		assertDataKept(t, c, "db2", before)
		if b, err := os.ReadFile(filepath.Join(c.dataDir("db2"), "fs_marker")); err != nil || string(b) != "foreign\n" {
			t.Fatalf("the protected data changed: %q %v", b, err)
		}
		if r := c.pgha("destroy", "-auto-approve"); r.code == 0 || !strings.Contains(r.stderr, "prevent_destroy") {
			t.Fatalf("destroy of a protected node:\n%s", r)
		}
		if r := c.pgha("restore", "-node", "db2", "-auto-approve", "20261201T000000Z-full"); r.code == 0 || !strings.Contains(r.stderr, "restore -node db2: db2 has prevent_destroy = true") {
			t.Fatalf("restore over a protected node:\n%s", r)
		}
		assertDataKept(t, c, "db2", before)
		// Unprotected again: the next apply re-clones it.
		c.write(string(orig))
		c.mustPgha("apply", "-auto-approve")
		waitStreaming(ctx, t, c, "db2", "db1")
	})

	ok = ok && t.Run("a declared primary without data: clone, then switchover, in one plan", func(t *testing.T) {
		c := c.with(t)
		failoverTo(ctx, t, c, "db2")
		gen := catalogRecord(ctx, t, c).Generation
		// db1's data is gone (moved away by hand), and something else sits
		// in its directory: it cannot be cloned; the plan is critical and
		// records nothing.
		gone := filepath.Join(c.dir, "data", "db1-gone")
		if err := os.Rename(c.dataDir("db1"), gone); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(c.dataDir("db1"), 0o700); err != nil {
			t.Fatal(err)
		}
		testenv.Chown(t, c.dataDir("db1"))
		c.sh("db1", `echo junk > "$D/notes.txt"`)
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 4 || !strings.Contains(r.stdout, "Critical: db1 has no data and cannot be cloned") || strings.Contains(r.stdout, "catalog.record") {
			t.Fatalf("plan with db1 unclonable (want exit 4, no catalog.record):\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if rec := catalogRecord(ctx, t, c); rec.Primary != "db2" || rec.Generation != gen {
			t.Fatalf("apply with a critical finding recorded %s at generation %d; want db2 at %d", rec.Primary, rec.Generation, gen)
		}
		c.sh("db1", `rm "$D/notes.txt"`)
		r = c.pgha("plan")
		for _, want := range []string{"+ standby.clone[db1]", "+ node.start[db1]", "~ switchover[db1]", "record the switchover from db2 to db1"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("plan for an empty declared primary lacks %q:\n%s", want, r)
			}
		}
		c.mustPgha("apply", "-auto-approve")
		converged(ctx, t, c, "db1", 21000)
		if rec := catalogRecord(ctx, t, c); rec.Primary != "db1" || rec.Generation != gen+1 {
			t.Fatalf("the catalog records %s at generation %d; want db1 at %d", rec.Primary, rec.Generation, gen+1)
		}
	})
}

// failoverTo waits until node replayed everything db1 wrote, has db1
// write what node does not receive, kills db1's postmaster and fails over
// to node: db1 has diverged and rejoins through pg_rewind.
func failoverTo(ctx context.Context, t *testing.T, c *cluster, node string) {
	t.Helper()
	var lsn string
	if err := c.conn(ctx, "db1").QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		q := c.conn(ctx, node)
		defer q.Close(ctx)
		var behind bool
		if err := q.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() < $1::pg_lsn", lsn).Scan(&behind); err != nil {
			return err
		}
		if behind {
			return fmt.Errorf("%s has not replayed %s yet", node, lsn)
		}
		return nil
	})
	// db1 then commits what node never receives, as a primary that
	// crashes with commits its standby has not got yet: its rejoin must
	// run pg_rewind (one that wrote nothing after the fork starts as a
	// standby without it, and these tests interrupt pg_rewind).
	standby := c.conn(ctx, node)
	defer standby.Close(ctx)
	for _, q := range []string{"ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"} {
		if _, err := standby.Exec(ctx, q); err != nil {
			t.Fatalf("%s on %s: %v", q, node, err)
		}
	}
	eventually(t, 10*time.Second, func() error {
		var n int
		if err := standby.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&n); err != nil || n > 0 {
			return fmt.Errorf("%s still receives WAL (%d receivers, %v)", node, n, err)
		}
		return nil
	})
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE fs_diverged AS SELECT g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	c.kill("db1")
	for _, q := range []string{"ALTER SYSTEM RESET primary_conninfo", "SELECT pg_reload_conf()"} {
		if _, err := standby.Exec(ctx, q); err != nil {
			t.Fatalf("%s on %s: %v", q, node, err)
		}
	}
	if r := c.pgha("failover", "-auto-approve", "-to", node); r.code != 0 {
		t.Fatalf("failover:\n%s", r)
	}
	if got := c.primary(ctx); got != node {
		t.Fatalf("primary after failover: %q", got)
	}
}

// interruptDuringRewind runs pgha with args and waits until pg_rewind of
// node works against its source (connected, its crash recovery of the
// target done), then freezes it (SIGSTOP). With sigint, pgha gets SIGINT
// as from Ctrl-C; else during breaks something under pg_rewind. Then
// pg_rewind runs on (SIGCONT) and pgha's result is returned.
//
// With writing, it waits further, until pg_rewind holds a file of the
// target open for writing: the interruption then falls in the middle of
// its copy, the target half old, half new.
func interruptDuringRewind(t *testing.T, c *cluster, node string, sigint, writing bool, during func(), args ...string) result {
	t.Helper()
	cmd := c.command(context.Background(), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var pid int
	var sawRecovery bool
	var connected time.Time
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("pgha ended before pg_rewind of %s was caught working (%v):\n%s%s", node, err, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no pg_rewind of %s within 90 s:\n%s", node, out.String())
		}
		if pid = rewindPID(c, node); pid != 0 {
			kids := children(pid)
			sawRecovery = sawRecovery || kids != ""
			if hasSocket(pid) && kids == "" {
				if connected.IsZero() {
					connected = time.Now()
				}
				if writing && writesUnder(pid, c.dataDir(node)) != "" {
					break
				}
				if !writing && (sawRecovery || time.Since(connected) > 200*time.Millisecond) {
					break
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP pg_rewind: %v", err)
	}
	t.Logf("pg_rewind (pid %d) frozen %s after it connected (crash recovery seen: %v; writing: %q)", pid, time.Since(connected).Round(time.Millisecond), sawRecovery, writesUnder(pid, c.dataDir(node)))
	var err error
	ended := false
	if sigint {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		// pgha must end pg_rewind itself: it stays frozen until pgha is gone.
		select {
		case err = <-done:
			ended = true
		case <-time.After(30 * time.Second):
			t.Errorf("pgha did not end within 30 s of Ctrl-C while pg_rewind was frozen: it waits for pg_rewind instead of ending it")
		}
	} else {
		during()
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if !ended {
		select {
		case err = <-done:
		case <-time.After(120 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("pgha did not end after the interruption:\n%s", out.String())
		}
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	c.with(t).noSecret("an interrupted pgha", r.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	return r
}

// children lists pid's child processes (pg_rewind's crash recovery of
// the target runs postgres --single under it).
func children(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return strings.TrimSpace(string(b))
}

// writesUnder names a file under dir that pid holds open for writing.
func writesUnder(pid int, dir string) string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil || !strings.HasPrefix(l, dir+"/") {
			continue
		}
		info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		for _, line := range strings.Split(string(info), "\n") {
			if f, ok := strings.CutPrefix(line, "flags:"); ok {
				if flags, err := strconv.ParseUint(strings.TrimSpace(f), 8, 32); err == nil && flags&3 != 0 {
					return strings.TrimPrefix(l, dir+"/")
				}
			}
		}
	}
	return ""
}

// hasSocket: pid holds a socket, which pg_rewind opens only to its source.
func hasSocket(pid int) bool {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}

// rewindPID finds the pg_rewind process whose target is node's data
// directory. In Docker every node's directory has the same path, so a
// candidate must also run in node's container (its PID namespace): a
// parallel test's pg_rewind in another container was once frozen in
// place of this one's.
func rewindPID(c *cluster, node string) int {
	dir := c.dataDir(node)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		argv := strings.Split(string(b), "\x00")
		if len(argv) > 2 && filepath.Base(argv[0]) == "pg_rewind" && strings.Contains(string(b), "\x00"+dir+"\x00") && c.inContainer(pid, node) {
			return pid
		}
	}
	return 0
}

// inContainer: pid runs in node's container (always true for local
// processes). The container's main process gives the PID namespace,
// which processes started by docker exec join.
func (c *cluster) inContainer(pid int, node string) bool {
	if c.rt != "docker" {
		return true
	}
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", c.container(node)).Output()
	if err != nil {
		return false
	}
	want, err1 := os.Readlink("/proc/" + strings.TrimSpace(string(out)) + "/ns/pid")
	got, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return err1 == nil && err2 == nil && got == want
}

type dirFact struct {
	ino   uint64
	bytes int64
}

// dirFacts is what shows a data directory was neither replaced nor
// emptied: its inode, and the size of its databases (base/; pg_rewind
// itself removes the WAL the target wrote after the fork).
func dirFacts(t *testing.T, dir string) dirFact {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	filepath.Walk(filepath.Join(dir, "base"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return dirFact{ino: fi.Sys().(*syscall.Stat_t).Ino, bytes: n}
}

// assertDataKept: the same directory, still a cluster, its databases not
// emptied (pg_rewind, when it ran a while, truncates and removes some
// files itself), and nothing set aside.
func assertDataKept(t *testing.T, c *cluster, node string, before dirFact) {
	t.Helper()
	after := dirFacts(t, c.dataDir(node))
	if after.ino != before.ino {
		t.Fatalf("%s's data directory was replaced (inode %d → %d)", node, before.ino, after.ino)
	}
	if after.bytes < before.bytes/2 {
		t.Fatalf("%s's databases shrank from %d to %d bytes", node, before.bytes, after.bytes)
	}
	t.Logf("%s's databases: %d bytes before, %d after", node, before.bytes, after.bytes)
	if _, err := os.Stat(filepath.Join(c.dataDir(node), "PG_VERSION")); err != nil {
		t.Fatalf("%s's data directory holds no cluster: %v", node, err)
	}
	if a := asideDirs(t, c, node); len(a) != 0 {
		t.Fatalf("%s's data was set aside: %v", node, a)
	}
}

func asideDirs(t *testing.T, c *cluster, node string) []string {
	t.Helper()
	m, err := filepath.Glob(c.dataDir(node) + ".aside-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// foreignCluster replaces a stopped standby's data with an unrelated
// cluster (another system identifier) carrying a marker file; the old
// directory is kept by the test, out of pgha's way.
func foreignCluster(t *testing.T, c *cluster, node string) {
	t.Helper()
	c.pgctl(node, "-m", "fast", "stop")
	if c.rt == "docker" {
		c.sh(node, `mv "$D" "$D-kept-$(date +%s%N)" && mkdir -m 700 "$D" && initdb -D "$D" -A trust -k >/dev/null && echo foreign > "$D/fs_marker"`)
		return
	}
	keep := filepath.Join(c.dir, fmt.Sprintf("%s-kept-%d", node, time.Now().UnixNano()))
	if err := os.Rename(c.dataDir(node), keep); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.dataDir(node), 0o700); err != nil {
		t.Fatal(err)
	}
	testenv.Chown(t, c.dataDir(node))
	c.sh(node, `initdb -D "$D" -A trust -k >/dev/null && echo foreign > "$D/fs_marker"`)
}

func catalogRecord(ctx context.Context, t *testing.T, c *cluster) *state.ClusterRecord {
	t.Helper()
	_, rec, _, err := c.env().Catalog.Observe(ctx)
	if err != nil || rec == nil {
		t.Fatalf("catalog record: %v %v", rec, err)
	}
	return rec
}

// noSwitchoverRecorded: the history holds no role change to node after
// the last failover.
func noSwitchoverRecorded(ctx context.Context, t *testing.T, c *cluster, node string) {
	t.Helper()
	events, err := c.env().Catalog.History(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events { // newest first
		if ev.Kind == "failover" {
			return
		}
		if ev.Kind == "switchover" || ev.Kind == "standby.rejoin" {
			t.Fatalf("the catalog history records %s (%s) after the interrupted apply", ev.Kind, ev.Message)
		}
	}
}

// waitStreaming waits until node streams from primary: primary has a
// streaming WAL sender for it.
func waitStreaming(ctx context.Context, t *testing.T, c *cluster, node, primary string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		var n int
		q := c.conn(ctx, primary)
		defer q.Close(ctx)
		if err := q.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", node).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%s has %d streaming senders for %s", primary, n, node)
		}
		return nil
	})
}

// converged: primary is the writable primary with rows rows, every other
// node streams and has them too, and plan -detailed-exitcode is 0.
func converged(ctx context.Context, t *testing.T, c *cluster, primary string, rows int) {
	t.Helper()
	if got := c.primary(ctx); got != primary {
		t.Fatalf("primary is %q, want %s", got, primary)
	}
	for _, n := range c.names {
		if n != primary {
			waitStreaming(ctx, t, c, n, primary)
		}
		eventually(t, 30*time.Second, func() error {
			q := c.conn(ctx, n)
			defer q.Close(ctx)
			var got int
			if err := q.QueryRow(ctx, "SELECT count(*) FROM fs_rows").Scan(&got); err != nil {
				return err
			}
			if got != rows {
				return fmt.Errorf("%s holds %d rows, want %d", n, got, rows)
			}
			return nil
		})
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 || !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("not converged:\n%s", r)
	}
}

// TestDockerFailsafeAside: on Docker the re-clone of a standby whose
// rewind cannot work moves its data aside inside the node's volume, and a
// later plan removes it saying what it frees.
func TestDockerFailsafeAside(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCluster(t, "docker", 2)
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE fs_rows (id int PRIMARY KEY, pad text); INSERT INTO fs_rows SELECT g, 'x' FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	waitStreaming(ctx, t, c, "db2", "db1")
	foreignCluster(t, c, "db2")
	r := c.mustPgha("apply", "-auto-approve")
	if !strings.Contains(r.stdout, "cannot work (another system identifier): re-cloning it") || !strings.Contains(r.stdout, "moved the data of db2 aside to /var/lib/pgha/data.aside-") {
		t.Fatalf("apply over a foreign standby:\n%s", r)
	}
	if got := c.sh("db2", `cat "$D".aside-*/fs_marker`); got != "foreign\n" {
		t.Fatalf("the old data is not in the volume beside the new: %q", got)
	}
	converged(ctx, t, c, "db1", 1000)
	if r := c.pgha("plan"); !strings.Contains(r.stdout, "Warning: db2 keeps 1 set-aside data directory") {
		t.Fatalf("plan does not say what is kept:\n%s", r)
	}
	old := "/var/lib/pgha/data.aside-" + time.Now().UTC().Add(-25*time.Hour).Format("20060102T150405Z")
	c.sh("db2", `mv "$D".aside-* `+old)
	r = c.pgha("plan", "-detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.stdout, "Warning: db2 keeps 1 set-aside data directory pgha did not make") || strings.Contains(r.stdout, "data.remove") {
		t.Fatalf("plan for an old set-aside directory pgha did not make:\n%s", r)
	}
	// Had pgha made it (its marker for this cluster), the plan removes it.
	c.sh("db2", `printf '# managed by pgha; edit cluster.hcl instead\ncluster = `+c.name+`\nnode = db2\n' > `+old+`/pgha.marker`)
	r = c.pgha("plan", "-detailed-exitcode")
	if r.code != 2 || !strings.Contains(r.stdout, "- data.remove["+filepath.Base(old)+"]") || !strings.Contains(r.stdout, "removing it frees ") {
		t.Fatalf("plan for an old set-aside directory:\n%s", r)
	}
	c.mustPgha("apply", "-auto-approve")
	if got := c.sh("db2", `ls -d "$D".aside-* 2>/dev/null | wc -l`); strings.TrimSpace(got) != "0" {
		t.Fatalf("set-aside directories left in the volume: %s", got)
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("not converged:\n%s", r)
	}
}

// TestDockerFailsafeCtrlC: on Docker, Ctrl-C during the rejoin's
// pg_rewind ends pg_rewind inside the container too (docker exec alone
// would let it run on), pgha stops at once, the data directory stays, and
// the next apply converges.
func TestDockerFailsafeCtrlC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCluster(t, "docker", 2)
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE fs_rows (id int PRIMARY KEY, pad text); INSERT INTO fs_rows SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	waitStreaming(ctx, t, c, "db2", "db1")
	failoverTo(ctx, t, c, "db2")
	if _, err := c.conn(ctx, "db2").Exec(ctx, "INSERT INTO fs_rows SELECT g, 'after failover' FROM generate_series(20001, 21000) g; UPDATE fs_rows SET pad = repeat('y', 500)"); err != nil {
		t.Fatal(err)
	}
	inode := func() string { return strings.TrimSpace(c.sh("db1", `stat -c %i "$D"`)) }
	before := inode()
	start := time.Now()
	r := interruptDuringRewind(t, c, "db1", true, false, nil, "failback", "-auto-approve", "-no-switchover")
	t.Logf("pgha ended %s after it was started, Ctrl-C included", time.Since(start).Round(time.Millisecond))
	if r.code == 0 || !strings.Contains(r.stderr, "pg_rewind of db1 interrupted") {
		t.Fatalf("failback interrupted during pg_rewind:\n%s", r)
	}
	eventually(t, 5*time.Second, func() error {
		if pid := rewindPID(c, "db1"); pid != 0 {
			return fmt.Errorf("pg_rewind (pid %d) still runs in the container after pgha ended", pid)
		}
		return nil
	})
	if got := inode(); got != before {
		t.Fatalf("db1's data directory was replaced (inode %s → %s)", before, got)
	}
	if out := c.sh("db1", `test -f "$D/PG_VERSION" && ls -d "$D".aside-* 2>/dev/null | wc -l`); strings.TrimSpace(out) != "0" {
		t.Fatalf("db1's data was set aside: %s", out)
	}
	if rec := catalogRecord(ctx, t, c); rec.Primary != "db2" {
		t.Fatalf("the catalog records %s after the interrupted failback", rec.Primary)
	}
	c.mustPgha("apply", "-auto-approve")
	converged(ctx, t, c, "db1", 21000)
}
