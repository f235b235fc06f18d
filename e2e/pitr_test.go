package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// pitrWrite is one insert of the writer: when it was sent and, if the
// commit was acknowledged, when.
type pitrWrite struct {
	id          int
	sent, acked time.Time
}

// pitrWriter inserts increasing ids through the multi-host connection
// string (it follows a failover) and notes when each insert was sent and
// when its commit was acknowledged.
type pitrWriter struct {
	mu     sync.Mutex
	writes []pitrWrite
	stop   chan struct{}
	done   chan struct{}
}

func startPitrWriter(ctx context.Context, c *cluster) *pitrWriter {
	w := &pitrWriter{stop: make(chan struct{}), done: make(chan struct{})}
	cfg, err := pgx.ParseConfig(c.multiHostDSN())
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.Password = superPW
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for id := 1; ; {
			select {
			case <-w.stop:
				return
			default:
			}
			if conn == nil {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				cn, err := pgx.ConnectConfig(cctx, cfg)
				cancel()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				conn = cn
			}
			wr := pitrWrite{id: id, sent: time.Now()}
			id++ // an id whose fate is unknown is never sent again
			ictx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := conn.Exec(ictx, "INSERT INTO pitr_writes VALUES ($1)", wr.id)
			cancel()
			if err != nil {
				conn.Close(context.Background())
				conn = nil
			} else {
				wr.acked = time.Now()
			}
			w.mu.Lock()
			w.writes = append(w.writes, wr)
			w.mu.Unlock()
			time.Sleep(3 * time.Millisecond)
		}
	}()
	return w
}

func (w *pitrWriter) snapshot() []pitrWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]pitrWrite(nil), w.writes...)
}

func (w *pitrWriter) finish() []pitrWrite {
	close(w.stop)
	<-w.done
	return w.snapshot()
}

// instant is a moment chosen during the writing run: the restore flag
// that names it, and the time before and after it was taken (the same
// for a time; for an LSN or a restore point, around the query).
type instant struct {
	flag, value   string
	before, after time.Time
	afterFailover bool
}

// TestLocalPointInTimeRestore is issue 13's acceptance for point-in-time
// restore: the continuous archive (pgha archive) runs, two fulls are
// taken, a client writes all along; five instants are chosen (two by
// time, one LSN and one restore point before a kill -9 and failover, one
// time after it, on the new timeline). Each restored database holds every
// row whose commit the writer saw acknowledged before its instant, and no
// row whose insert was sent after it.
func TestLocalPointInTimeRestore(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n    archive {\n      flush = \"200ms\"\n    }\n  }\n")
	c.mustPgha("apply", "-auto-approve")
	ctx := context.Background()

	archLog := c.startArchive(t)
	windows := func() []state.RecoveryWindow {
		t.Helper()
		var l struct {
			Backups     []state.Backup         `json:"backups"`
			Recoverable []state.RecoveryWindow `json:"recoverable"`
		}
		if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &l); err != nil {
			t.Fatal(err)
		}
		return l.Recoverable
	}
	// The archive streams from where its slot starts; the fulls come after.
	eventually(t, 30*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(c.dir, "backups", c.name, "wal")); err != nil {
			return fmt.Errorf("the archive has stored nothing yet: %v\n%s", err, archLog())
		}
		return nil
	})
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE pitr_writes (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	newest := func() string {
		t.Helper()
		var l struct{ Backups []state.Backup }
		if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &l); err != nil || len(l.Backups) == 0 {
			t.Fatalf("backup list: %v", err)
		}
		return l.Backups[0].ID
	}
	c.mustPgha("backup")
	fullA := newest()
	w := startPitrWriter(ctx, c)
	pause := func() { time.Sleep(1500 * time.Millisecond) }
	var instants []instant
	atTime := func(afterFailover bool) {
		pause()
		now := time.Now()
		instants = append(instants, instant{flag: "-to-time", value: now.UTC().Format(time.RFC3339Nano), before: now, after: now, afterFailover: afterFailover})
	}
	atQuery := func(conn *pgx.Conn, flag, query string, args ...any) {
		pause()
		var v string
		before := time.Now()
		if err := conn.QueryRow(ctx, query, args...).Scan(&v); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		if flag == "-to-restore-point" {
			v = args[0].(string)
		}
		instants = append(instants, instant{flag: flag, value: v, before: before, after: after})
	}
	atTime(false)
	atQuery(p, "-to-lsn", "SELECT pg_current_wal_insert_lsn()::text")
	pause()
	c.mustPgha("backup") // the second chain: later instants restore from it
	fullB := newest()
	atQuery(p, "-to-restore-point", "SELECT pg_create_restore_point($1)::text", "pitr-rp")
	atTime(false)
	p.Close(ctx)

	// kill -9 of the primary under the writer, failover to db2: a new timeline.
	pause()
	killed := time.Now()
	c.kill("db1")
	if r := c.pgha("failover", "-auto-approve"); r.code != 0 {
		t.Fatalf("failover:\n%s", r)
	}
	q := c.conn(ctx, "db2")
	defer q.Close(ctx)
	tli := timeline(ctx, t, q)
	if tli < 2 {
		t.Fatalf("db2 after the failover is on timeline %d", tli)
	}
	eventually(t, 30*time.Second, func() error {
		for _, wr := range w.snapshot() {
			if !wr.acked.IsZero() && wr.sent.After(killed) {
				return nil
			}
		}
		return fmt.Errorf("no write acknowledged since the failover")
	})
	atTime(true)
	pause()
	writes := w.finish()

	// Writes acknowledged by db1 that db2 never received are lost by the
	// asynchronous failover, not by the restore: counted, and not
	// expected after it. (A backend of db1 can still commit for a few
	// milliseconds after its postmaster was killed.)
	have := ids2set(ctx, t, q)
	lost := map[int]bool{}
	for _, wr := range writes {
		if !wr.acked.IsZero() && !have[wr.id] {
			if wr.sent.After(killed.Add(time.Second)) {
				t.Errorf("id %d, acknowledged after the failover at %s, is not on db2", wr.id, wr.acked.UTC().Format(time.RFC3339Nano))
			}
			lost[wr.id] = true
		}
	}
	t.Logf("%d writes, %d acknowledged; %d acknowledged by db1 were lost by the asynchronous failover", len(writes), countAcked(writes), len(lost))

	// The archive reaches the end of the run on the new timeline; backup
	// list shows the window from the first archived full.
	var end string
	if err := q.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	endLSN, _ := state.ParseLSN(end)
	eventually(t, 30*time.Second, func() error {
		for _, win := range windows() {
			if to, _ := state.ParseLSN(win.ToLSN); win.Timeline == tli && to >= endLSN {
				return nil
			}
		}
		return fmt.Errorf("the archive does not reach %s on timeline %d yet: %+v", end, tli, windows())
	})
	if r := c.mustPgha("backup", "list"); !strings.Contains(r.stdout, fmt.Sprintf("timeline %d from ", tli)) {
		t.Errorf("backup list does not show the recoverable window:\n%s", r.stdout)
	}

	// Before the first archived full: refused, naming the window.
	if r := c.pgha("restore", "-target-dir", filepath.Join(testenv.Dir(t), "early"), "-to-time", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)); r.code == 0 ||
		!strings.Contains(r.stderr, "recoverable: timeline") {
		t.Errorf("a restore to before every full was not refused with the window:\n%s", r)
	}

	for i, in := range instants {
		dir := filepath.Join(testenv.Dir(t), fmt.Sprintf("pitr%d", i))
		began := time.Now()
		r := c.mustPgha("restore", "-target-dir", dir, in.flag, in.value)
		restored := time.Since(began)
		got, newTLI := startRestored(ctx, t, c, dir)
		var missing, extra []int
		for _, wr := range writes {
			switch {
			case !wr.acked.IsZero() && wr.acked.Before(in.before) && !got[wr.id] && !lost[wr.id]:
				missing = append(missing, wr.id)
			case wr.sent.After(in.after) && got[wr.id]:
				extra = append(extra, wr.id)
			}
		}
		t.Logf("instant %d (%s %s): %d rows restored, timeline %d, restore %s then recovery %s", i+1, in.flag, in.value, len(got), newTLI,
			restored.Round(time.Millisecond), time.Since(began.Add(restored)).Round(time.Millisecond))
		if len(missing) > 0 || len(extra) > 0 {
			for _, id := range head(append(append([]int{}, missing...), extra...)) {
				wr := writes[slicesIndex(writes, id)]
				t.Logf("id %d: sent %s acked %s (kill %s, instant %s..%s)", id, wr.sent.UTC().Format("15:04:05.000000"), wr.acked.UTC().Format("15:04:05.000000"),
					killed.UTC().Format("15:04:05.000000"), in.before.UTC().Format("15:04:05.000000"), in.after.UTC().Format("15:04:05.000000"))
			}
			log, _ := os.ReadFile(filepath.Join(dir, "restore.log"))
			t.Logf("restored server log:\n%s", log)
			t.Errorf("instant %d (%s %s): %d acknowledged rows missing (%v), %d rows sent after it present (%v)\n%s",
				i+1, in.flag, in.value, len(missing), head(missing), len(extra), head(extra), r.stdout)
		}
		// The newest full that ended before the instant: A for the first
		// two, B (taken between) for the rest.
		if want := map[bool]string{true: fullA, false: fullB}[i < 2]; !strings.Contains(r.stdout, "full "+want+" ") {
			t.Errorf("instant %d was not restored from full %s:\n%s", i+1, want, r.stdout)
		}
		if len(got) == 0 {
			t.Errorf("instant %d: nothing restored", i+1)
		}
		if in.afterFailover && newTLI <= tli {
			t.Errorf("instant %d after the failover restored on timeline %d, want one past %d", i+1, newTLI, tli)
		}
	}
}

// startRestored starts a restored data directory on a free port, waits
// until it has promoted, and returns its ids and its timeline.
func startRestored(ctx context.Context, t *testing.T, c *cluster, dir string) (map[int]bool, int) {
	t.Helper()
	port := testenv.FreePort(t)
	pgctl := filepath.Join(testenv.PGBinDir(t), "pg_ctl")
	logf := filepath.Join(dir, "restore.log")
	start := testenv.Command(t, pgctl, "-D", dir, "-l", logf, "-w", "-t", "120",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c archive_mode=off", port), "start")
	if out, err := start.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logf)
		t.Fatalf("start the restored %s: %v\n%s\n%s", dir, err, out, log)
	}
	defer testenv.Command(t, pgctl, "-D", dir, "-m", "immediate", "stop").Run()
	conn := c.connPort(ctx, port)
	defer conn.Close(ctx)
	eventually(t, 60*time.Second, func() error {
		var rec bool
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
			log, _ := os.ReadFile(logf)
			return fmt.Errorf("not promoted (%v)\n%s", err, log)
		}
		return nil
	})
	return ids2set(ctx, t, conn), timeline(ctx, t, conn)
}

// timeline is the timeline a primary writes on (pg_control's lags until
// the checkpoint after a promotion).
func timeline(ctx context.Context, t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var tli int
	if err := conn.QueryRow(ctx, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int").Scan(&tli); err != nil {
		t.Fatal(err)
	}
	return tli
}

func ids2set(ctx context.Context, t *testing.T, conn *pgx.Conn) map[int]bool {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT id FROM pitr_writes")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, id := range ids {
		out[int(id)] = true
	}
	return out
}

func slicesIndex(ws []pitrWrite, id int) int {
	for i, w := range ws {
		if w.id == id {
			return i
		}
	}
	return 0
}

func countAcked(ws []pitrWrite) int {
	n := 0
	for _, w := range ws {
		if !w.acked.IsZero() {
			n++
		}
	}
	return n
}

func head(ids []int) []int {
	sort.Ints(ids)
	if len(ids) > 10 {
		return ids[:10]
	}
	return ids
}

// TestDockerPointInTimeRestore restores the declared primary's container
// (-node: -target-dir writes to this host only) from a full and the
// continuous archive, whose WAL streams into the node's volume as one more
// tar (the image has no pgha to fetch it with): a client writes through a
// kill -9 of db1 and the failover to db2; with db2 then stopped, db1 is
// restored to an instant after the failover (on timeline 2), then to one
// before it. Each time the restored primary holds every row acknowledged
// before the instant (less what the asynchronous failover lost, counted)
// and none sent after it. Then a restore drill runs on Docker.
func TestDockerPointInTimeRestore(t *testing.T) {
	t.Parallel()
	requireDocker(t, TestImage)
	c := newCluster(t, "docker", 2)
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n    archive {\n      flush = \"200ms\"\n    }\n  }\n")
	c.mustPgha("apply", "-auto-approve")
	ctx := context.Background()
	archLog := c.startArchive(t)
	eventually(t, 30*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(c.dir, "backups", c.name, "wal")); err != nil {
			return fmt.Errorf("the archive has stored nothing yet: %v\n%s", err, archLog())
		}
		return nil
	})
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE pitr_writes (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	p.Close(ctx)
	c.mustPgha("backup")
	w := startPitrWriter(ctx, c)
	time.Sleep(2 * time.Second)
	before := time.Now()
	time.Sleep(1500 * time.Millisecond)
	killed := time.Now()
	c.kill("db1")
	if r := c.pgha("failover", "-auto-approve"); r.code != 0 {
		t.Fatalf("failover:\n%s", r)
	}
	eventually(t, 60*time.Second, func() error {
		for _, wr := range w.snapshot() {
			if !wr.acked.IsZero() && wr.sent.After(killed) {
				return nil
			}
		}
		return fmt.Errorf("no write acknowledged since the failover")
	})
	time.Sleep(2 * time.Second)
	after := time.Now()
	time.Sleep(2 * time.Second)
	writes := w.finish()
	q := c.conn(ctx, "db2")
	tli := timeline(ctx, t, q)
	have := ids2set(ctx, t, q)
	var end string
	if err := q.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	q.Close(ctx)
	lost := map[int]bool{}
	for _, wr := range writes {
		if !wr.acked.IsZero() && !have[wr.id] {
			lost[wr.id] = true
		}
	}
	t.Logf("%d writes, %d acknowledged, db2 on timeline %d; %d acknowledged by db1 lost by the asynchronous failover", len(writes), countAcked(writes), tli, len(lost))
	endLSN, _ := state.ParseLSN(end)
	eventually(t, 30*time.Second, func() error {
		var l struct{ Recoverable []state.RecoveryWindow }
		if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &l); err != nil {
			return err
		}
		for _, win := range l.Recoverable {
			if to, _ := state.ParseLSN(win.ToLSN); win.Timeline == tli && to >= endLSN {
				return nil
			}
		}
		return fmt.Errorf("the archive does not reach %s on timeline %d yet: %+v", end, tli, l.Recoverable)
	})
	// db1 is the declared primary: with db2 stopped, it is restored over.
	c.kill("db2")
	last := tli
	for _, instant := range []time.Time{after, before} {
		began := time.Now()
		r := c.mustPgha("restore", "-node", "db1", "-auto-approve", "-to-time", instant.UTC().Format(time.RFC3339Nano))
		took := time.Since(began)
		q := c.conn(ctx, "db1")
		got := ids2set(ctx, t, q)
		newTLI := timeline(ctx, t, q)
		q.Close(ctx)
		var missing, extra []int
		for _, wr := range writes {
			switch {
			case !wr.acked.IsZero() && wr.acked.Before(instant) && !got[wr.id] && !lost[wr.id]:
				missing = append(missing, wr.id)
			case wr.sent.After(instant) && got[wr.id]:
				extra = append(extra, wr.id)
			}
		}
		t.Logf("restored db1 to %s in %s: %d rows of %d written, now on timeline %d", instant.UTC().Format(time.RFC3339Nano), took.Round(time.Millisecond), len(got), len(writes), newTLI)
		if len(missing) > 0 || len(extra) > 0 || len(got) == 0 {
			t.Errorf("%d acknowledged rows missing (%v), %d rows sent after the instant present (%v), %d restored\n%s", len(missing), head(missing), len(extra), head(extra), len(got), r.stdout)
		}
		// Each restore promotes to a timeline none of the nodes was on,
		// though the archive may not hold the last restore's yet.
		if newTLI <= last {
			t.Errorf("the restored primary is on timeline %d, want one past %d", newTLI, last)
		}
		last = newTLI
	}

	// A restore drill on Docker: the full and the archive to its end
	// stream into a scratch container of the image, amcheck runs over the
	// published port.
	r := c.mustPgha("backup", "drill")
	if !strings.Contains(r.stdout, "archived WAL segments") || !strings.Contains(r.stdout, "amcheck: ") || !strings.Contains(r.stdout, "passed") {
		t.Errorf("backup drill on docker:\n%s", r)
	}
	t.Logf("backup drill:\n%s", r.stdout)
}

// startArchive runs `pgha archive` until the test ends, and logs what it
// printed if the test failed; the function returned reads it so far.
func (c *cluster) startArchive(t *testing.T) func() string {
	t.Helper()
	actx, stopArchive := context.WithCancel(context.Background())
	arch := c.command(actx, "archive")
	var archLog strings.Builder
	arch.Stdout, arch.Stderr = &archLog, &archLog
	if err := arch.Start(); err != nil {
		stopArchive()
		t.Fatal(err)
	}
	archDone := make(chan struct{})
	go func() { arch.Wait(); close(archDone) }()
	t.Cleanup(func() {
		stopArchive()
		<-archDone
		if t.Failed() {
			t.Logf("pgha archive:\n%s", archLog.String())
		}
	})
	return archLog.String
}
