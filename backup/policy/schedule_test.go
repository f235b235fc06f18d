package policy

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
		d, err := NextDue(week, taken, now)
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
		if again, err := NextDue(week, taken, now.Add(time.Minute)); err != nil || again != nil {
			t.Fatalf("day %d: still due after taking it: %+v", day, again)
		}
	}
}

func TestMissedNightsAndFailover(t *testing.T) {
	taken := []state.Backup{bk("mon", "full", at(0, 2, 0))}
	// Tuesday and Wednesday nights were missed; Thursday 09:00 asks for one
	// backup: Wednesday's differential is covered by nothing, but Thursday's
	// incremental tick is the latest; the strongest missed type wins.
	d, err := NextDue(week, taken, at(3, 9, 0))
	if err != nil || d == nil || d.Type != "differential" || d.Since != at(2, 2, 0) {
		t.Fatalf("after missed nights: %+v %v", d, err)
	}
	// No full at all: a full, now.
	if d, _ := NextDue(week, nil, at(2, 9, 0)); d == nil || d.Type != "full" {
		t.Fatalf("no full: %+v", d)
	}
	// A failed backup does not count.
	failed := append(taken, state.Backup{ID: "x", Type: "incremental", Started: at(1, 2, 1), Status: "failed", Timeline: 1})
	if d, _ := NextDue(week, failed, at(1, 3, 0)); d == nil || d.Type != "incremental" {
		t.Fatalf("failed backup counted: %+v", d)
	}
	if _, err := NextDue(Schedule{Full: "nonsense"}, taken, at(1, 3, 0)); err == nil {
		t.Fatal("bad cron accepted")
	}
}

// A chain continues across a switchover or a failover when its newest
// backup is on the primary's timeline history; else a new full is due.
func TestChainBreak(t *testing.T) {
	head := state.Backup{ID: "b1", Timeline: 1, StopLSN: "0/5000100"}
	for _, tc := range []struct {
		name     string
		head     state.Backup
		timeline int
		history  []state.TimelineSwitch
		want     string
	}{
		{"same timeline", head, 1, nil, ""},
		{"switchover after the backup", head, 2, []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x6000000}}, ""},
		{"switch exactly at the stop", head, 2, []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x5000100}}, ""},
		{"two promotions since", head, 3, []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x6000000}, {Parent: 2, SwitchLSN: 0x7000000}}, ""},
		{"failover lost the backup's end", head, 2, []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x5000000}},
			"backup b1 stops at 0/5000100 on timeline 1, after 0/5000000 where the primary's timeline 2 left it (the primary never had all it holds)"},
		{"another branch", state.Backup{ID: "b2", Timeline: 2, StopLSN: "0/5000100"}, 3, []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x6000000}},
			"backup b2 is on timeline 2, which is not in the history of the primary's timeline 3"},
		{"unknown timeline", head, 0, nil, ""},
	} {
		if got := ChainBreak(tc.head, tc.timeline, tc.history); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestHead(t *testing.T) {
	all := []state.Backup{
		{ID: "f1", Type: "full", Status: "complete", Started: at(0, 2, 0)},
		{ID: "i1", Type: "incremental", Root: "f1", Status: "complete", Started: at(1, 2, 0)},
		{ID: "i2", Type: "incremental", Root: "f1", Status: "failed", Started: at(2, 2, 0)},
		{ID: "l1", Type: "full", Method: "logical", Status: "complete", Started: at(-7, 2, 0)},
	}
	if h := Head(all); h == nil || h.ID != "i1" {
		t.Fatalf("head %+v, want i1", h)
	}
	if h := Head(all[:1]); h == nil || h.ID != "f1" {
		t.Fatalf("head of a lone full %+v, want f1", h)
	}
	if h := Head(nil); h != nil {
		t.Fatalf("head of nothing: %+v", h)
	}
}
