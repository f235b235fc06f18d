package local_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestForkFactsAsksOnlyTheCheckpointTimeline runs pgdata.ForkScript for
// real (pg_controldata, pg_waldump) on a fresh data directory, its latest
// checkpoint on timeline 1, with probes for that timeline and for others.
// Only timeline 1's probes are answered: the fork decision reads no other
// (pgdata.FollowsWithoutRewind), and pg_waldump waits 5 s before it says
// a segment file is missing, which made a rejoin's fork check take 72-107
// s once a source's history held some 40 timelines. A probe whose segment
// file is absent is answered from the directory listing, not by
// pg_waldump.
func TestForkFactsAsksOnlyTheCheckpointTimeline(t *testing.T) {
	r := newRuntime(t)
	ctx := context.Background()
	dir := filepath.Join(testenv.Dir(t), "data", "db1")
	if err := r.CreateDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := r.InitDB(ctx, dir, "postgres", superPW); err != nil {
		t.Fatal(err)
	}
	probe := func(probes ...string) string {
		t.Helper()
		out, err := r.ForkFacts(ctx, dir, probes)
		if err != nil {
			t.Fatalf("ForkFacts %v: %v", probes, err)
		}
		return out
	}
	cd := pgdata.ParseControlData(probe())
	if cd["Latest checkpoint's TimeLineID"] != "1" {
		t.Fatalf("a fresh data directory's checkpoint timeline is %q, want 1", cd["Latest checkpoint's TimeLineID"])
	}
	ckpt, err := state.ParseLSN(cd["Latest checkpoint location"])
	if err != nil {
		t.Fatalf("checkpoint location: %v", err)
	}
	// The checkpoint record itself is there (rc=0); segment 9 of
	// timeline 1 is not; timelines 2 and 3 are not asked about.
	out := probe("2", "0/1000000", "1", ckpt.String(), "3", "0/5000000", "1", "0/9000028")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "pgha-waldump ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("probe lines %q, want two, both on timeline 1\n%s", lines, out)
	}
	if want := "pgha-waldump 1 " + ckpt.String() + " rc=0: rmgr: XLOG"; !strings.HasPrefix(lines[0], want) {
		t.Errorf("probe at the checkpoint: %q, want it to start %q", lines[0], want)
	}
	if want := "pgha-waldump 1 0/9000028 rc=2: no WAL segment 000000010000000000000009 in pg_wal"; lines[1] != want {
		t.Errorf("probe past the WAL: %q, want %q", lines[1], want)
	}
	if !strings.Contains(out, "pgha-history-files:") {
		t.Errorf("no history files line:\n%s", out)
	}
}
