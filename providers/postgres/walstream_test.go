package postgres

import (
	"testing"

	"github.com/pgha/pgha/state"
)

func TestResumePoint(t *testing.T) {
	// Timeline 3's history: 1 ended at 0/5000000, 2 at 0/7000000.
	hist := []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x5000000}, {Parent: 2, SwitchLSN: 0x7000000}}
	for _, tc := range []struct {
		name   string
		tl     int32
		pos    state.LSN
		wantTL int32
		want   state.LSN
	}{
		{"before the first switch: stay on 1", 1, 0x4800000, 1, 0x4800000},
		{"at the switch point: next timeline", 1, 0x5000000, 2, 0x5000000},
		{"past 1's end (an old primary's WAL): 2 at the switch", 1, 0x6000000, 2, 0x5000000},
		{"far past: still 2 from 1's end, whose WAL the archive lacks", 1, 0x9000000, 2, 0x5000000},
		{"on 2 before its end", 2, 0x6000000, 2, 0x6000000},
		{"on 2 past its end", 2, 0x7100000, 3, 0x7000000},
		{"on the current timeline", 3, 0x9000000, 3, 0x9000000},
	} {
		tl, pos := resumePoint(hist, tc.tl, 3, tc.pos)
		if tl != tc.wantTL || pos != tc.want {
			t.Errorf("%s: resumePoint(%d, %s) = %d, %s; want %d, %s", tc.name, tc.tl, tc.pos, tl, pos, tc.wantTL, tc.want)
		}
	}
}
