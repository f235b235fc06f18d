package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/state"
)

// archiveRepo reads the continuous archive of a test cluster.
type archiveRepo struct {
	t       *testing.T
	dir     string // the repository
	cluster string
}

func (r archiveRepo) status() *state.ArchiveStatus {
	r.t.Helper()
	s, err := backup.ReadArchiveStatus(context.Background(), backup.Dir(r.dir), r.cluster)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func (r archiveRepo) entries() []walarchive.Entry {
	r.t.Helper()
	names, err := backup.Dir(r.dir).List(context.Background(), walarchive.Prefix(r.cluster))
	if err != nil {
		r.t.Fatal(err)
	}
	var out []walarchive.Entry
	for _, n := range names {
		if e, ok := walarchive.Parse(r.cluster, n); ok {
			out = append(out, e)
		}
	}
	return out
}

// segment returns the decompressed content of an archive object.
func (r archiveRepo) object(key string) []byte {
	r.t.Helper()
	f, err := os.Open(filepath.Join(r.dir, filepath.FromSlash(key)))
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		r.t.Fatal(err)
	}
	defer zr.Close()
	b, err := io.ReadAll(zr)
	if err != nil {
		r.t.Fatalf("decompress %s: %v", key, err)
	}
	return b
}

// waitDurable waits until the archive's durable position passes lsn on
// timeline tl (0: any) and returns how long that took from since.
func (r archiveRepo) waitDurable(tl int, lsn state.LSN, since time.Time, d time.Duration) time.Duration {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, _ := backup.ReadArchiveStatus(context.Background(), backup.Dir(r.dir), r.cluster)
		if s != nil && s.Flushed >= lsn && (tl == 0 || s.Timeline == tl) {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the archive did not hold %s (timeline %d) within %s; its status: %+v", lsn, tl, d, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storedBy waits until receiver w (run with -v) logs a durable position
// at or past lsn on timeline tl, and returns how long after since it
// logged it: the log line is written once the partial segment is synced,
// before the status object follows (within a second).
func storedBy(t *testing.T, w *watchProc, tl int, lsn state.LSN, since time.Time, d time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, r := range w.records(0, "archive stored", map[string]string{"timeline": fmt.Sprint(tl)}) {
			if l, err := state.ParseLSN(r.field("lsn")); err == nil && l >= lsn {
				// The line may come before the client saw its commit
				// return: then the delay is nothing.
				return max(0, r.Time.Sub(since))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgha archive did not log %s stored on timeline %d within %s:\n%s", lsn, tl, d, w.tail(20))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func currentLSN(ctx context.Context, t *testing.T, p *pgx.Conn) state.LSN {
	t.Helper()
	var s string
	if err := p.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, err := state.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLocalArchive runs `pgha archive` beside a writing primary: every
// segment reaches the repository, byte for byte as in pg_wal, the
// partial segment follows each commit within about a second, and across
// a switchover the history file is stored and the archive continues on
// the new timeline from the new primary. The plan shows the archive's
// position; retention (fulls = 1, after a second full) removes exactly
// the WAL that ends before the kept full's start. Then `pgha watch` runs
// the receiver itself, and after kill -9 of the primary and the
// watcher's failover it archives timeline 3 from the new primary.
func TestLocalArchive(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n    archive {\n      flush = \"200ms\"\n    }\n  }\n")
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	repo := archiveRepo{t: t, dir: filepath.Join(c.dir, "backups"), cluster: c.name}
	ar := c.startProc("archive", "archive", "-log-format", "json", "-v")
	ar.waitLog(t, 0, "archive streaming", map[string]string{"node": "db1"}, 30*time.Second)

	p := c.conn(ctx, "db1")
	eventually(t, 10*time.Second, func() error {
		var active bool
		if err := p.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = 'pgha_archive'").Scan(&active); err != nil || !active {
			return fmt.Errorf("slot pgha_archive on db1: active %v, %v", active, err)
		}
		return nil
	})
	// The plan declares the slot: it does not drop it.
	if r := c.mustPgha("plan"); strings.Contains(r.stdout, "pgha_archive") {
		t.Fatalf("the plan touches the archive slot:\n%s", r.stdout)
	}
	if _, err := p.Exec(ctx, "CREATE TABLE ar (id int, pad text)"); err != nil {
		t.Fatal(err)
	}
	first := currentLSN(ctx, t, p)
	repo.waitDurable(1, first, time.Now(), 10*time.Second)
	// Commits, each followed until the archive holds it: the delay from
	// the commit's return to the durable position past it.
	var delays []time.Duration
	for i := range 20 {
		if _, err := p.Exec(ctx, "INSERT INTO ar SELECT g, repeat('x', 200) FROM generate_series($1::int, $1::int + 2000) g", i*10000); err != nil {
			t.Fatal(err)
		}
		done := time.Now()
		lsn := currentLSN(ctx, t, p)
		delays = append(delays, storedBy(t, ar, 1, lsn, done, 10*time.Second))
		if i%5 == 4 {
			if _, err := p.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
				t.Fatal(err)
			}
		}
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("archive delay over %d commits: median %s, max %s", len(delays), delays[len(delays)/2], delays[len(delays)-1])
	if delays[len(delays)-1] > 1500*time.Millisecond {
		t.Fatalf("a commit reached the archive %s after it returned (flush = 200ms; want about 1 s at most): %v", delays[len(delays)-1], delays)
	}

	// Every segment from the first archived one to the current one is
	// there, complete, and each complete one equals pg_wal's file.
	if _, err := p.Exec(ctx, "INSERT INTO ar VALUES (0, 'last')"); err != nil {
		t.Fatal(err)
	}
	last := currentLSN(ctx, t, p)
	repo.waitDurable(1, last, time.Now(), 10*time.Second)
	segSize := uint64(repo.status().SegmentSize)
	if segSize == 0 {
		t.Fatal("the status records no segment size")
	}
	have := map[string]walarchive.Entry{}
	for _, e := range repo.entries() {
		have[e.Name+map[walarchive.Kind]string{walarchive.Segment: "", walarchive.Partial: ".partial", walarchive.History: ""}[e.Kind]] = e
	}
	firstSeg := walarchive.SegmentName(1, uint64(first), segSize)
	lastSeg := walarchive.SegmentName(1, uint64(last), segSize)
	checked := 0
	for l := uint64(first) - uint64(first)%segSize; l <= uint64(last); l += segSize {
		name := walarchive.SegmentName(1, l, segSize)
		if name == lastSeg {
			if _, ok := have[name+".partial"]; !ok {
				t.Fatalf("the segment being written, %s, has no partial object; the archive holds %v", name, keys(have))
			}
			continue
		}
		e, ok := have[name]
		if !ok {
			t.Fatalf("segment %s is missing from the archive (from %s to %s); it holds %v", name, firstSeg, lastSeg, keys(have))
		}
		if _, ok := have[name+".partial"]; ok {
			t.Fatalf("segment %s is complete, yet its partial object is still there", name)
		}
		if wal, err := os.ReadFile(filepath.Join(c.dataDir("db1"), "pg_wal", name)); err == nil {
			if got := repo.object(e.Key); !bytes.Equal(got, wal) {
				t.Fatalf("archived segment %s (%d bytes) differs from pg_wal's (%d bytes)", name, len(got), len(wal))
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatalf("no archived segment could be compared with pg_wal (%s..%s)", firstSeg, lastSeg)
	}
	t.Logf("segments %s..%s archived; %d compared byte for byte with pg_wal", firstSeg, lastSeg, checked)

	// Switchover: the archive follows db2 on timeline 2.
	src, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	c.write(strings.Replace(string(src), `primary = "db1"`, `primary = "db2"`, 1))
	mark := ar.mark()
	c.mustPgha("apply", "-auto-approve")
	ar.waitLog(t, mark, "archive streaming", map[string]string{"node": "db2"}, 30*time.Second)
	p2 := c.conn(ctx, "db2")
	if _, err := p2.Exec(ctx, "INSERT INTO ar VALUES (-1, 'after the switchover')"); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	lsn := currentLSN(ctx, t, p2)
	d := storedBy(t, ar, 2, lsn, done, 10*time.Second)
	repo.waitDurable(2, lsn, done, 10*time.Second) // the status follows
	t.Logf("after the switchover, a commit on db2 was archived %s after it returned", d)
	var hist, tl2 bool
	for _, e := range repo.entries() {
		hist = hist || (e.Kind == walarchive.History && e.Timeline == 2)
		tl2 = tl2 || (e.Kind != walarchive.History && e.Timeline == 2)
	}
	if !hist || !tl2 {
		t.Fatalf("after the switchover the archive holds history file 2: %v, timeline 2's WAL: %v", hist, tl2)
	}
	if s := repo.status(); s.Node != "db2" || s.Timeline != 2 {
		t.Fatalf("status after the switchover: %+v", s)
	}
	js, _ := json.Marshal(repo.status())
	t.Logf("status: %s", js)

	// The plan shows the archive's position; no gap.
	if r := c.mustPgha("plan"); !strings.Contains(r.stdout, "WAL archive: durable up to") || strings.Contains(r.stdout, "Critical") {
		t.Fatalf("plan with the archive running:\n%s", r.stdout)
	}

	// Retention: a new full on db2, then fulls = 1. The first chain goes,
	// and with it the WAL that ends before the new full starts; nothing
	// after it.
	var taken struct{ Backups []state.Backup }
	c.mustPgha("backup")
	if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &taken); err != nil || len(taken.Backups) != 2 {
		t.Fatalf("backup list: %+v %v", taken, err)
	}
	full2 := taken.Backups[0]
	start2, err := state.ParseLSN(full2.StartLSN)
	if err != nil || full2.Node != "db2" {
		t.Fatalf("the second full: %+v (%v)", full2, err)
	}
	if _, err := p2.Exec(ctx, "INSERT INTO ar SELECT g, repeat('y', 200) FROM generate_series(1, 5000) g"); err != nil {
		t.Fatal(err)
	}
	repo.waitDurable(2, currentLSN(ctx, t, p2), time.Now(), 10*time.Second)
	src, err = os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	c.write(strings.Replace(string(src), "    archive {", "    retention {\n      fulls = 1\n    }\n    archive {", 1))
	plan := c.mustPgha("plan").stdout
	if !strings.Contains(plan, "backup.expire[") || !strings.Contains(plan, fmt.Sprintf("wal_before = %q", start2.String())) {
		t.Fatalf("the plan does not expire the first chain with the WAL before %s:\n%s", start2, plan)
	}
	before := len(repo.entries())
	c.mustPgha("apply", "-auto-approve")
	var kept, holding int
	for _, e := range repo.entries() {
		if e.Kind == walarchive.History {
			continue
		}
		s, _ := walarchive.SegmentStart(e.Name, segSize)
		if s+segSize <= uint64(start2) {
			t.Fatalf("segment %s ends before the kept full's start %s, yet it is still archived", e.Key, start2)
		}
		if s <= uint64(start2) && uint64(start2) < s+segSize && e.Kind == walarchive.Segment {
			holding++
		}
		kept++
	}
	if holding == 0 || kept >= before {
		t.Fatalf("after expiry: %d of %d archive objects kept, %d holding the kept full's start %s", kept, before, holding, start2)
	}
	t.Logf("retention removed %d archive objects ending before %s (the kept full's start), kept %d", before-kept, start2, kept)
	if r := c.mustPgha("plan"); strings.Contains(r.stdout, "Critical") || strings.Contains(r.stdout, "gap") {
		t.Fatalf("the plan after expiry finds a gap:\n%s", r.stdout)
	}
	ar.stop(t)

	// pgha watch runs the receiver itself, and follows a failover.
	c.setPolicy(policyFailover, watchDefaults)
	w := c.startWatch("watch")
	w.waitLog(t, 0, "archive streaming", map[string]string{"node": "db2"}, 30*time.Second)
	if _, err := p2.Exec(ctx, "INSERT INTO ar VALUES (-2, 'under the watcher')"); err != nil {
		t.Fatal(err)
	}
	repo.waitDurable(2, currentLSN(ctx, t, p2), time.Now(), 10*time.Second)
	mark = w.mark()
	c.kill("db2")
	killed := time.Now()
	w.waitLog(t, mark, "archive streaming", map[string]string{"node": "db1"}, 60*time.Second)
	p1 := c.conn(ctx, "db1")
	if _, err := p1.Exec(ctx, "INSERT INTO ar VALUES (-3, 'after the failover')"); err != nil {
		t.Fatal(err)
	}
	d = repo.waitDurable(3, currentLSN(ctx, t, p1), time.Now(), 20*time.Second)
	t.Logf("failover to db1 (timeline 3): a commit there was archived %s after it returned, %s after the kill", d, time.Since(killed).Round(time.Millisecond))
	hist = false
	for _, e := range repo.entries() {
		hist = hist || (e.Kind == walarchive.History && e.Timeline == 3)
	}
	if !hist {
		t.Fatal("after the failover the archive holds no history file of timeline 3")
	}
	w.stop(t)
}

func keys(m map[string]walarchive.Entry) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}

// TestLocalArchiveGap: the archive slot is lost while no receiver runs
// and the primary recycles the WAL after the archive's end. The receiver,
// started again, says so ("archive gap") and goes on from where the
// primary's WAL begins rather than archiving nothing more; the plan's
// finding is critical and names the first missing segment.
func TestLocalArchiveGap(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 1)
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n    archive {}\n  }\n")
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	repo := archiveRepo{t: t, dir: filepath.Join(c.dir, "backups"), cluster: c.name}
	ar := c.startProc("archive", "archive", "-log-format", "json", "-v")
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE gap (id int)"); err != nil {
		t.Fatal(err)
	}
	storedBy(t, ar, 1, currentLSN(ctx, t, p), time.Now(), 30*time.Second)
	repo.waitDurable(1, currentLSN(ctx, t, p), time.Now(), 10*time.Second)
	if r := c.mustPgha("plan"); strings.Contains(r.stdout, "Critical") {
		t.Fatalf("a plan before the gap is critical:\n%s", r.stdout)
	}
	ar.stop(t)
	end := repo.status().Flushed

	// The slots go (the archive's, and the backup slot that also holds
	// WAL on this version), and the primary recycles its WAL past the
	// 128 MB pgha keeps (wal_keep_size).
	eventually(t, 10*time.Second, func() error {
		_, err := p.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('pgha_archive', 'pgha_backup')")
		return err
	})
	for range 12 {
		if _, err := p.Exec(ctx, "INSERT INTO gap SELECT g FROM generate_series(1, 1000) g; SELECT pg_switch_wal(); CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
	}
	gone := walarchive.SegmentName(1, uint64(end), uint64(repo.status().SegmentSize))
	if _, err := os.Stat(filepath.Join(c.dataDir("db1"), "pg_wal", gone)); err == nil {
		t.Fatalf("the primary still holds %s after 12 switches and checkpoints", gone)
	}

	ar = c.startProc("archive again", "archive", "-log-format", "json", "-v")
	gapRec := ar.waitLog(t, 0, "archive gap", map[string]string{"node": "db1"}, 30*time.Second)
	if _, err := p.Exec(ctx, "INSERT INTO gap VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	storedBy(t, ar, 1, currentLSN(ctx, t, p), time.Now(), 30*time.Second)
	repo.waitDurable(1, currentLSN(ctx, t, p), time.Now(), 10*time.Second)
	r := c.pgha("plan", "-detailed-exitcode")
	want := "Critical: the WAL archive has a gap: " + walarchive.SegmentName(1, uint64(end)+uint64(repo.status().SegmentSize), uint64(repo.status().SegmentSize))
	if r.code != 4 || !strings.Contains(r.stdout, want) {
		t.Fatalf("after the gap (%s), plan -detailed-exitcode exits %d, want 4 and %q:\n%s", gapRec.Line, r.code, want, r.stdout)
	}
	t.Logf("receiver: %s", gapRec.Line)
	ar.stop(t)
}
