package policy

import (
	"testing"
	"time"

	"github.com/pgha/pgha/state"
)

func TestDrillDue(t *testing.T) {
	now := time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC) // a Tuesday
	cases := []struct {
		spec string
		last time.Time
		due  bool
	}{
		{"0 4 * * *", time.Time{}, true},                                   // never ran
		{"0 4 * * *", now.Add(-2 * time.Hour), true},                       // ran before today's 04:00
		{"0 4 * * *", now.Add(-30 * time.Minute), false},                   // ran after it
		{"0 4 * * 0", now.Add(-24 * time.Hour), false},                     // weekly on Sunday, ran Monday
		{"0 4 * * 0", time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC), true}, // ran Sunday before the tick
		{"", time.Time{}, false},                                           // no schedule
	}
	for _, c := range cases {
		_, due, err := DrillDue(c.spec, c.last, now)
		if err != nil || due != c.due {
			t.Errorf("%q last %v: due %v (%v), want %v", c.spec, c.last, due, err, c.due)
		}
	}
	if _, _, err := DrillDue("every day", time.Time{}, now); err == nil {
		t.Error("a bad schedule passed")
	}
	bs := []state.Backup{
		{ID: "a", VerifyMode: state.VerifyDrill, VerifiedAt: now.Add(-time.Hour)},
		{ID: "b", VerifyMode: state.VerifyRestore, VerifiedAt: now},
		{ID: "c", VerifyMode: state.VerifyDrill, VerifiedAt: now.Add(-48 * time.Hour)},
	}
	if l := LastDrill(bs); l == nil || l.ID != "a" {
		t.Errorf("last drill %v, want a", l)
	}
	if LastDrill(bs[1:2]) != nil {
		t.Error("a restore verify counted as a drill")
	}
}
