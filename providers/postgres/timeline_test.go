package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// stopServer shuts p down cleanly (a shutdown checkpoint, its standbys
// receive everything it wrote).
func stopServer(t *testing.T, p *testenv.Postgres) {
	t.Helper()
	out, err := testenv.Command(t, filepath.Join(p.BinDir, "pg_ctl"), "-D", p.DataDir, "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil {
		t.Fatalf("stop %d: %v\n%s", p.Port, err, out)
	}
}

// follow points standby s at upstream u (primary_conninfo is reloadable
// since PostgreSQL 13; recovery_target_timeline is 'latest').
func follow(ctx context.Context, t *testing.T, s, u *testenv.Postgres) {
	t.Helper()
	ci := fmt.Sprintf("host=%s port=%d user=%s password=%s application_name=%d", u.Host, u.Port, u.User, u.Password, s.Port)
	if err := Exec(ctx, endpoint(s), "ALTER SYSTEM SET primary_conninfo = '"+ci+"'"); err != nil {
		t.Fatal(err)
	}
	if err := Reload(ctx, endpoint(s)); err != nil {
		t.Fatal(err)
	}
}

func queryString(ctx context.Context, t *testing.T, p *testenv.Postgres, sql string) string {
	t.Helper()
	conn, err := connect(ctx, endpoint(p))
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(conn)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// waitFor polls cond (a SQL boolean on p) until it holds.
func waitFor(ctx context.Context, t *testing.T, p *testenv.Postgres, what, cond string) {
	t.Helper()
	var last string
	for {
		conn, err := connect(ctx, endpoint(p))
		if err == nil {
			var ok bool
			err = conn.QueryRow(ctx, "SELECT "+cond).Scan(&ok)
			closeConn(conn)
			if err == nil && ok {
				return
			}
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %s did not hold (%s)", what, cond, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probe logs every candidate source of a standby's timeline, so that a
// run shows which of them lag.
func probe(ctx context.Context, t *testing.T, name string, p *testenv.Postgres) {
	t.Helper()
	t.Logf("%s: replay %s, wal receiver tli %s, checkpoint tli %s, min recovery point %s tli %s, pg_wal %s", name,
		queryString(ctx, t, p, "SELECT COALESCE(pg_last_wal_replay_lsn()::text, '-')"),
		queryString(ctx, t, p, "SELECT COALESCE((SELECT received_tli::text FROM pg_stat_wal_receiver), 'none')"),
		queryString(ctx, t, p, "SELECT (pg_control_checkpoint()).timeline_id::text"),
		queryString(ctx, t, p, "SELECT (pg_control_recovery()).min_recovery_end_lsn::text"),
		queryString(ctx, t, p, "SELECT (pg_control_recovery()).min_recovery_end_timeline::text"),
		queryString(ctx, t, p, "SELECT string_agg(name, ' ' ORDER BY name) FROM pg_ls_waldir()"))
}

// TestStandbyTimelineWithoutReceiver: after a clean switchover A→B, C
// follows B and replays into timeline 2; when B stops, C has no WAL
// receiver and no restartpoint on timeline 2 yet (pg_control still says
// timeline 1). C must be observed on timeline 2, else the planner would
// think C replayed timeline 1 past B's fork and plan a needless rewind.
func TestStandbyTimelineWithoutReceiver(t *testing.T) {
	a := testenv.StartPostgres(t)
	b := testenv.StartStandby(t, a, "b", "")
	c := testenv.StartStandby(t, a, "c", "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, s := range []*testenv.Postgres{b, c} {
		if err := WaitStreaming(ctx, endpoint(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Exec(ctx, endpoint(a), "CREATE TABLE t AS SELECT 1 AS x"); err != nil {
		t.Fatal(err)
	}

	// Switchover: A stops cleanly, B and C have replayed all of it.
	stopServer(t, a)
	end := queryString(ctx, t, b, "SELECT pg_last_wal_replay_lsn()::text")
	waitFor(ctx, t, c, "C replays A's shutdown checkpoint", "pg_last_wal_replay_lsn() >= '"+end+"'")
	if err := Promote(ctx, endpoint(b)); err != nil {
		t.Fatal(err)
	}
	follow(ctx, t, c, b)
	if err := Exec(ctx, endpoint(b), "INSERT INTO t SELECT generate_series(2, 1000)"); err != nil {
		t.Fatal(err)
	}
	top := queryString(ctx, t, b, "SELECT pg_current_wal_lsn()::text")
	waitFor(ctx, t, c, "C replays B's timeline 2", "pg_last_wal_replay_lsn() >= '"+top+"'")
	probe(ctx, t, "C streaming from B", c)

	primary, standby := &state.Node{}, &state.Node{}
	Observe(ctx, endpoint(b), primary, nil)
	if primary.Timeline != 2 || len(primary.History) != 1 || primary.History[0].Parent != 1 {
		t.Fatalf("B after promotion: timeline %d history %+v", primary.Timeline, primary.History)
	}
	fork := primary.History[0].SwitchLSN

	stopServer(t, b)
	waitFor(ctx, t, c, "C's WAL receiver stops", "NOT EXISTS (SELECT FROM pg_stat_wal_receiver)")
	probe(ctx, t, "C without receiver", c)
	Observe(ctx, endpoint(c), standby, nil)
	if standby.Error != "" || standby.Upstream != nil {
		t.Fatalf("C: error %q upstream %+v", standby.Error, standby.Upstream)
	}
	if standby.ReplayLSN <= fork {
		t.Fatalf("C replayed to %s, not past the fork %s: the test proves nothing", standby.ReplayLSN, fork)
	}
	if tli := queryString(ctx, t, c, "SELECT "+qReplayTLI+"::text"); tli != "2" {
		t.Fatalf("the WAL segment file C replays from says timeline %s", tli)
	}
	if standby.Timeline != 2 {
		t.Fatalf("C replayed timeline 2 to %s (past the fork %s) but is observed on timeline %d", standby.ReplayLSN, fork, standby.Timeline)
	}
	if len(standby.History) != 1 || standby.History[0] != primary.History[0] {
		t.Fatalf("C's history %+v, B's %+v", standby.History, primary.History)
	}
}

// TestStandbyTimelineDiverged: B is promoted while A keeps writing and C
// keeps replaying A's timeline 1 past B's fork. Pointed at B, C's WAL
// receiver fetches 00000002.history, but the startup process refuses the
// timeline ("forked off ... before current recovery point"), so C stays
// on timeline 1 past the fork and must be observed there: it can only
// rejoin B by a rewind. Both with C's replay still in the fork's WAL
// segment and in a later one.
func TestStandbyTimelineDiverged(t *testing.T) {
	for _, later := range []bool{false, true} {
		t.Run(fmt.Sprintf("later-segment=%v", later), func(t *testing.T) {
			a := testenv.StartPostgres(t)
			b := testenv.StartStandby(t, a, "b", "")
			c := testenv.StartStandby(t, a, "c", "")
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			for _, s := range []*testenv.Postgres{b, c} {
				if err := WaitStreaming(ctx, endpoint(s)); err != nil {
					t.Fatal(err)
				}
			}
			// The fork lies inside a WAL segment, not at the switch the
			// base backups ended with.
			if err := Exec(ctx, endpoint(a), "CREATE TABLE before AS SELECT 1 AS x"); err != nil {
				t.Fatal(err)
			}
			pos := queryString(ctx, t, a, "SELECT pg_current_wal_lsn()::text")
			waitFor(ctx, t, b, "B replays A's write", "pg_last_wal_replay_lsn() >= '"+pos+"'")
			if err := Promote(ctx, endpoint(b)); err != nil {
				t.Fatal(err)
			}
			// A, not knowing, writes on; C follows A past the fork.
			sql := "CREATE TABLE t AS SELECT generate_series(1, 1000) AS x"
			if later {
				sql = "SELECT pg_switch_wal(); " + sql
			}
			if err := Exec(ctx, endpoint(a), sql); err != nil {
				t.Fatal(err)
			}
			top := queryString(ctx, t, a, "SELECT pg_current_wal_lsn()::text")
			waitFor(ctx, t, c, "C replays A's writes", "pg_last_wal_replay_lsn() >= '"+top+"'")
			stopServer(t, a)

			primary, standby := &state.Node{}, &state.Node{}
			Observe(ctx, endpoint(b), primary, nil)
			if primary.Timeline != 2 || len(primary.History) != 1 {
				t.Fatalf("B: timeline %d history %+v", primary.Timeline, primary.History)
			}
			fork := primary.History[0].SwitchLSN
			follow(ctx, t, c, b)
			waitFor(ctx, t, c, "C's WAL receiver fetches B's history", "EXISTS (SELECT FROM pg_ls_waldir() WHERE name = '00000002.history')")
			// Give the startup process time to consider (and refuse) it.
			time.Sleep(2 * time.Second)
			probe(ctx, t, "C diverged", c)
			Observe(ctx, endpoint(c), standby, nil)
			if standby.Error != "" || !standby.InRecovery {
				t.Fatalf("C: %+v", standby)
			}
			if standby.ReplayLSN <= fork || standby.Timeline != 1 {
				t.Fatalf("C observed on timeline %d at %s; it replayed timeline 1 past B's fork at %s", standby.Timeline, standby.ReplayLSN, fork)
			}
			if tli := queryString(ctx, t, c, "SELECT "+qReplayTLI+"::text"); tli != "1" {
				t.Fatalf("the WAL segment file C replays from says timeline %s", tli)
			}
			logf := filepath.Join(filepath.Dir(c.DataDir), "log")
			refused := "new timeline 2 forked off current database system timeline 1 before current recovery point"
			if out, err := os.ReadFile(logf); err != nil || !strings.Contains(string(out), refused) {
				t.Fatalf("C's log %s does not say %q (%v)", logf, refused, err)
			}
			seg := func(l state.LSN) state.LSN { return (l - 1) >> 24 }
			if later == (seg(fork) == seg(standby.ReplayLSN)) {
				t.Fatalf("fork %s and C's replay %s: later segment %v", fork, standby.ReplayLSN, later)
			}
		})
	}
}

// TestSegmentName checks qSegment on log id and segment boundaries and
// high log ids against PostgreSQL's XLogFileName (16 MB segments, the
// initdb default) and, where the segment holding the byte before an LSN
// is the one holding the LSN, against the server's pg_walfile_name().
// (At a boundary PostgreSQL 15 names the segment before it, 17 the one
// after.)
func TestSegmentName(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s := queryString(ctx, t, p, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"); s != "16777216" {
		t.Fatalf("wal_segment_size %s", s)
	}
	for _, l := range []state.LSN{1, 0xFFFFFF, 0x1000000, 0x1000001, 0xFFFFFFFF, 1 << 32, 1<<32 + 1, 1<<32 + 0x1000000,
		0xABCDEF12345678, 0xFFFFFFFFFF000001, 0xFFFFFFFFFFFFFFFF} {
		b := uint64(l) - 1
		want := fmt.Sprintf("%08X%08X", b>>32, (b&0xFFFFFFFF)/0x1000000)
		got := queryString(ctx, t, p, "SELECT "+qSegment+" FROM (SELECT '"+l.String()+"'::pg_lsn - '0/1'::pg_lsn AS b, 16777216::numeric AS s) r")
		if got != want {
			t.Errorf("segment of the byte before %s: %s, want %s", l, got, want)
		}
		if uint64(l)%0x1000000 != 0 {
			if pg := queryString(ctx, t, p, "SELECT substr(pg_walfile_name('"+l.String()+"'), 9)"); pg != want {
				t.Errorf("pg_walfile_name(%s) names segment %s, want %s", l, pg, want)
			}
		}
	}
}
