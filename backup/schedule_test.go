package backup

import (
	"testing"
	"time"

	"github.com/pgha/pgha/state"
)

var week = Schedule{Full: "0 2 * * 1", Incremental: "0 2 * * 2,4,6", Differential: "0 2 * * 3,5"}

// at returns a time in the week of Monday 2026-11-23.
func at(day int, hh, mm int) time.Time {
	return time.Date(2026, 11, 23+day, hh, mm, 0, 0, time.UTC)
}

func bk(id, typ string, t time.Time) state.Backup {
	return state.Backup{ID: id, Type: typ, Started: t, Status: "complete", Timeline: 1}
}

// TestWeek simulates the classic week with a fixed clock: at 02:05 each
// day the schedule asks for the day's type, with the right parent, and
// nothing more once it is taken.
func TestWeek(t *testing.T) {
	want := []struct{ typ, parent string }{
		{"full", ""},          // Mon
		{"incremental", "d0"}, // Tue: since the last backup
		{"differential", "d0"},
		{"incremental", "d2"},
		{"differential", "d0"},
		{"incremental", "d4"},
		{"", ""}, // Sunday: nothing scheduled
	}
	var taken []state.Backup
	taken = append(taken, bk("prev", "full", at(-7, 2, 0)))
	for day, w := range want {
		now := at(day, 2, 5)
		d, err := NextDue(week, taken, 1, now)
		if err != nil {
			t.Fatal(err)
		}
		if w.typ == "" {
			if d != nil {
				t.Fatalf("day %d: nothing due expected, got %+v", day, d)
			}
			continue
		}
		if d == nil || d.Type != w.typ || d.Parent != w.parent && w.parent != "" {
			t.Fatalf("day %d: want %s (parent %s), got %+v", day, w.typ, w.parent, d)
		}
		id := "d" + string(rune('0'+day))
		taken = append(taken, bk(id, d.Type, now))
		if again, _ := NextDue(week, taken, 1, now.Add(time.Minute)); again != nil {
			t.Fatalf("day %d: still due after taking it: %+v", day, again)
		}
	}
}

func TestMissedNightsAndFailover(t *testing.T) {
	taken := []state.Backup{bk("mon", "full", at(0, 2, 0))}
	// Tuesday and Wednesday nights were missed; Thursday 09:00 asks for one
	// backup: Wednesday's differential is covered by nothing, but Thursday's
	// incremental tick is the latest; the strongest missed type wins.
	d, err := NextDue(week, taken, 1, at(3, 9, 0))
	if err != nil || d == nil || d.Type != "differential" || d.Since != at(2, 2, 0) {
		t.Fatalf("after missed nights: %+v %v", d, err)
	}
	// No full at all: a full, now.
	if d, _ := NextDue(week, nil, 1, at(2, 9, 0)); d == nil || d.Type != "full" {
		t.Fatalf("no full: %+v", d)
	}
	// After a failover the timeline moved: a new full.
	if d, _ := NextDue(week, taken, 2, at(0, 9, 0)); d == nil || d.Type != "full" || d.Reason == "" {
		t.Fatalf("after failover: %+v", d)
	}
	// A failed backup does not count.
	failed := append(taken, state.Backup{ID: "x", Type: "incremental", Started: at(1, 2, 1), Status: "failed", Timeline: 1})
	if d, _ := NextDue(week, failed, 1, at(1, 3, 0)); d == nil || d.Type != "incremental" {
		t.Fatalf("failed backup counted: %+v", d)
	}
	if _, err := NextDue(Schedule{Full: "nonsense"}, taken, 1, at(1, 3, 0)); err == nil {
		t.Fatal("bad cron accepted")
	}
}
