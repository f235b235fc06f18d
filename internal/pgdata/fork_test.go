package pgdata

import (
	"strings"
	"testing"

	"github.com/pgha/pgha/state"
)

// The output of ForkScript for the killed primary of bench/ha.go (PostgreSQL
// 15): its WAL ends exactly where the new primary's timeline 3 left 2.
const forkOut = `pg_control version number:            1300
Database cluster state:               in production
Latest checkpoint location:           0/38C50688
Latest checkpoint's REDO location:    0/38C50650
Latest checkpoint's TimeLineID:       2
Minimum recovery ending location:     0/0
pgha-history-files: 00000002.history
pgha-waldump 1 0/38C50538 rc=0: rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/38C50538
pgha-waldump 2 0/38C50700 rc=1: pg_waldump: error: could not find a valid record after 0/38C50700
`

func TestFollowsWithoutRewind(t *testing.T) {
	hist := []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x38C50538}, {Parent: 2, SwitchLSN: 0x38C50700}}
	for _, tc := range []struct {
		name string
		edit func(string) string
		tli  int
		hist []state.TimelineSwitch
		want bool
		why  string
	}{
		{"ends at the fork", nil, 3, hist, true, "ends at or before the fork at 0/38C50700"},
		{"wrote after the fork", func(s string) string {
			return strings.Replace(s, "rc=1: pg_waldump: error: could not find a valid record after 0/38C50700", "rc=0: rmgr: Heap len (rec/tot): 54/54, lsn: 0/38C50700", 1)
		}, 3, hist, false, "wrote WAL after the fork"},
		{"segment missing", func(s string) string {
			return strings.Replace(s, "could not find a valid record after 0/38C50700", `could not find file "000000020000000000000038"`, 1)
		}, 3, hist, false, "unreadable"},
		{"shut down cleanly (pg_rewind may have begun)", func(s string) string {
			return strings.Replace(s, "in production", "shut down", 1)
		}, 3, hist, false, "cluster state"},
		{"checkpoint at the fork", func(s string) string {
			return strings.Replace(s, "location:           0/38C50688", "location:           0/38C50700", 1)
		}, 3, hist, false, "not before the fork"},
		{"promoted after its checkpoint", func(s string) string {
			return strings.Replace(s, "pgha-history-files: 00000002.history", "pgha-history-files: 00000002.history 00000003.history", 1)
		}, 3, hist, false, "a timeline after"},
		{"timeline not in the source's history", nil, 3, hist[:1], false, "does not contain its timeline 2"},
		{"same timeline as the source", nil, 2, hist[:1], false, "not older"},
		{"no probe for its timeline", func(s string) string {
			return strings.Replace(s, "pgha-waldump 2 ", "pgha-waldump 9 ", 1)
		}, 3, hist, false, "no WAL check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := forkOut
			if tc.edit != nil {
				out = tc.edit(out)
			}
			got, why := FollowsWithoutRewind(out, tc.tli, tc.hist)
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("FollowsWithoutRewind = %v, %q; want %v, containing %q", got, why, tc.want, tc.why)
			}
		})
	}
	if got := strings.Join(ForkProbes(hist), " "); got != "1 0/38C50538 2 0/38C50700" {
		t.Fatalf("ForkProbes = %q", got)
	}
}

func TestLastCommonRedo(t *testing.T) {
	hist := []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x38C50538}, {Parent: 2, SwitchLSN: 0x38C50700}}
	if redo, ok := LastCommonRedo(forkOut, 3, hist); !ok || redo != 0x38C50650 {
		t.Fatalf("LastCommonRedo = %s, %v; want 0/38C50650, true", redo, ok)
	}
	// A checkpoint after the fork: the last common one is further back.
	after := strings.Replace(forkOut, "location:           0/38C50688", "location:           0/38C50800", 1)
	if _, ok := LastCommonRedo(after, 3, hist); ok {
		t.Fatal("LastCommonRedo answered for a checkpoint after the fork")
	}
	if _, ok := LastCommonRedo(forkOut, 3, hist[:1]); ok {
		t.Fatal("LastCommonRedo answered for a timeline outside the source's history")
	}
	if _, ok := LastCommonRedo(forkOut, 2, hist); ok {
		t.Fatal("LastCommonRedo answered for the source's own timeline")
	}
}
