package pitr

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/state"
)

const ss = DefaultSegSize

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// at is the LSN off bytes into segment no.
func at(no, off uint64) state.LSN { return state.LSN(no*ss + off) }

// minute is t0 plus m minutes: segment no was stored at minute no.
func minute(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

func full(id string, tli int, stopSeg uint64) state.Backup {
	return state.Backup{ID: id, Type: "full", Status: "complete", Format: "base", Timeline: tli,
		StartLSN: at(stopSeg, 0x28).String(), StopLSN: at(stopSeg, 0x100).String(), Finished: minute(int(stopSeg))}
}

// archive builds an archive: segs are "TLI:FROM-TO" ranges of complete
// segments, a trailing "+" marks the last as partial (written to offset
// 0x4000); segment no was stored at minute no.
func archive(hist map[int][]state.TimelineSwitch, segs ...string) *Archive {
	var es []walarchive.Entry
	for _, r := range segs {
		var tli int
		var from, to uint64
		partial := strings.HasSuffix(r, "+")
		fmt.Sscanf(strings.TrimSuffix(r, "+"), "%d:%d-%d", &tli, &from, &to)
		for no := from; no <= to; no++ {
			name := walarchive.SegmentName(tli, no*ss, ss)
			key := walarchive.SegmentKey("c", name, "zstd")
			if partial && no == to {
				key = walarchive.PartialKey("c", name, "zstd")
			}
			e, ok := walarchive.Parse("c", key)
			if !ok {
				panic(key)
			}
			es = append(es, e)
		}
	}
	for tli := range hist {
		e, _ := walarchive.Parse("c", walarchive.HistoryKey("c", tli))
		es = append(es, e)
	}
	a := NewArchive(es, ss)
	for tli, h := range hist {
		a.History[tli] = h
	}
	for _, m := range a.Segments {
		for no, e := range m {
			a.Written[e.Key] = minute(int(no))
			if e.Kind == walarchive.Partial {
				a.PartialEnd[e.Key] = at(no, 0x4000)
			}
		}
	}
	return a
}

func names(es []walarchive.Entry) string {
	var out []string
	for _, e := range es {
		s := fmt.Sprintf("%d:%d", e.Timeline, e.Seg)
		if e.Kind == walarchive.Partial {
			s += "+"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestChoose(t *testing.T) {
	two := map[int][]state.TimelineSwitch{2: {{Parent: 1, SwitchLSN: at(9, 0x100)}}}
	fulls := []state.Backup{full("A", 1, 3), full("B", 1, 8)}
	cases := []struct {
		name    string
		backups []state.Backup
		a       *Archive
		target  Target
		found   map[int]state.LSN
		full    string
		tli     int
		segs    string
		err     string
	}{
		{name: "lsn after the newest full", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{LSN: at(10, 0x50)},
			full: "B", tli: 1, segs: "1:8 1:9 1:10 1:11"},
		{name: "lsn before the newest full: the older one", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{LSN: at(5, 0)},
			full: "A", tli: 1, segs: "1:3 1:4 1:5 1:6"},
		{name: "time between the fulls", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{Time: minute(6)},
			full: "A", tli: 1, segs: "1:3 1:4 1:5 1:6 1:7 1:8 1:9 1:10 1:11 1:12 1:13+"},
		{name: "time on the partial segment", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{Time: minute(13).Add(-time.Second)},
			full: "B", tli: 1, segs: "1:8 1:9 1:10 1:11 1:12 1:13+"},
		{name: "time after the archive's end", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{Time: minute(20)},
			err: "ends at 0/D004000, written 2026-12-01T10:13:00Z); recoverable: timeline 1 from 0/3000100 (2026-12-01 10:03:00Z, end of A) to 0/D004000 (2026-12-01 10:13:00Z)"},
		{name: "lsn in the partial's written part", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{LSN: at(13, 0x3000)},
			full: "B", tli: 1, segs: "1:8 1:9 1:10 1:11 1:12 1:13+"},
		{name: "lsn past the partial's written part", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{LSN: at(13, 0x5000)},
			err: "the archive's WAL ends at 0/D004000"},
		{name: "a gap after the older full: the newer one is past it", backups: fulls, a: archive(nil, "1:2-5", "1:7-13+"), target: Target{LSN: at(10, 0)},
			full: "B", tli: 1, segs: "1:8 1:9 1:10 1:11"},
		{name: "a target inside the gap", backups: fulls, a: archive(nil, "1:2-5", "1:7-13+"), target: Target{LSN: at(6, 0x10)},
			err: "from A on timeline 1: the archive misses 000000010000000000000006 (a gap), so the WAL stops at 0/6000000); recoverable: timeline 1 from 0/3000100 (2026-12-01 10:03:00Z, end of A) to 0/6000000 (2026-12-01 10:05:00Z), then a gap: 000000010000000000000006 is missing"},
		{name: "before every full", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{Time: minute(2)},
			err: "no full backup ended before 2026-12-01T10:02:00Z; recoverable: timeline 1 from 0/3000100"},
		{name: "the archive starts after the full", backups: []state.Backup{full("A", 1, 3)}, a: archive(nil, "1:5-13+"), target: Target{LSN: at(10, 0)},
			err: "the archive does not hold 000000010000000000000003, where the backup ends"},
		{name: "after a failover: the new timeline", backups: fulls, a: archive(two, "1:2-10", "2:9-12+"), target: Target{LSN: at(11, 0)},
			full: "B", tli: 2, segs: "1:8 2:9 2:10 2:11 2:12+"},
		{name: "before the failover, still through timeline 2's history", backups: fulls, a: archive(two, "1:2-10", "2:9-12+"), target: Target{LSN: at(5, 0)},
			full: "A", tli: 2, segs: "1:3 1:4 1:5 1:6"},
		{name: "time after the failover", backups: fulls, a: archive(two, "1:2-10", "2:9-12+"), target: Target{Time: minute(11)},
			full: "B", tli: 2, segs: "1:8 2:9 2:10 2:11 2:12+"},
		{name: "a full on the new timeline", backups: append(fulls, full("C", 2, 10)), a: archive(two, "1:2-10", "2:9-12+"), target: Target{LSN: at(11, 0)},
			full: "C", tli: 2, segs: "2:10 2:11 2:12+"},
		{name: "restore point found on timeline 2", backups: fulls, a: archive(two, "1:2-10", "2:9-12+"), target: Target{Name: "before-drop"},
			found: map[int]state.LSN{2: at(10, 0x500)}, full: "B", tli: 2, segs: "1:8 2:9 2:10 2:11"},
		{name: "restore point nowhere", backups: fulls, a: archive(nil, "1:2-13+"), target: Target{Name: "nope"},
			err: `the archived WAL holds no restore point "nope"`},
		{name: "no archive", backups: fulls, a: archive(nil), target: Target{LSN: at(5, 0)}, err: "the WAL archive holds no WAL"},
		{name: "no full", a: archive(nil, "1:2-13+"), target: Target{LSN: at(5, 0)}, err: "no complete physical full backup"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.found != nil {
				c.a.Found = c.found
			}
			got, err := Choose(c.backups, c.a, c.target)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Full.ID != c.full || got.Timeline != c.tli || names(got.Segments) != c.segs {
				t.Errorf("got full %s timeline %d segments %q, want %s %d %q", got.Full.ID, got.Timeline, names(got.Segments), c.full, c.tli, c.segs)
			}
			if want := fmt.Sprint(c.tli); got.Settings["recovery_target_timeline"] != want {
				t.Errorf("recovery_target_timeline %q, want %s", got.Settings["recovery_target_timeline"], want)
			}
			if c.tli == 2 && (len(got.Histories) != 1 || got.Histories[0] != 2) {
				t.Errorf("histories %v, want [2]", got.Histories)
			}
		})
	}
}

func TestSettings(t *testing.T) {
	cases := []struct {
		t    Target
		key  string
		want string
	}{
		{Target{Time: time.Date(2026, 12, 1, 13, 5, 1, 250_000_000, time.FixedZone("CET", 3600))}, "recovery_target_time", "2026-12-01 12:05:01.25+00"},
		{Target{LSN: 0x1_0500_0028}, "recovery_target_lsn", "1/5000028"},
		{Target{Name: "x"}, "recovery_target_name", "x"},
	}
	for _, c := range cases {
		s := Settings(c.t, 3)
		if s[c.key] != c.want || s["recovery_target_inclusive"] != "on" || s["recovery_target_action"] != "promote" || s["recovery_target_timeline"] != "3" || s["restore_command"] != "false" {
			t.Errorf("%s: %v", c.t, s)
		}
		n := 0
		for _, k := range []string{"recovery_target_time", "recovery_target_lsn", "recovery_target_name"} {
			if s[k] != "" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d targets set: %v", c.t, n, s)
		}
	}
}

func TestParseTarget(t *testing.T) {
	cases := []struct {
		time, lsn, name string
		want            string
		err             string
	}{
		{time: "2026-12-01T13:05:00.25Z", want: "2026-12-01T13:05:00.25Z"},
		{time: "2026-12-01T14:05:00+01:00", want: "2026-12-01T13:05:00Z"},
		{time: "2026-12-01 13:05:00", want: "2026-12-01T13:05:00Z"},
		{time: "yesterday", err: "RFC 3339"},
		{lsn: "0/5000028", want: "0/5000028"},
		{lsn: "5000028", err: "LSN"},
		{name: "before-drop", want: `restore point "before-drop"`},
		{name: strings.Repeat("x", 64), err: "shorter than 64"},
		{time: "2026-12-01T13:05:00Z", lsn: "0/1", err: "exclude each other"},
		{want: "nothing"},
	}
	for _, c := range cases {
		got, err := ParseTarget(c.time, c.lsn, c.name)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: error %v, want %q", c, err, c.err)
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%+v: got %s, %v", c, got, err)
		}
	}
}

func TestWindows(t *testing.T) {
	two := map[int][]state.TimelineSwitch{2: {{Parent: 1, SwitchLSN: at(9, 0x100)}}}
	fulls := []state.Backup{full("A", 1, 3), full("B", 1, 8)}
	got := DescribeWindows(Windows(fulls, archive(two, "1:2-10", "2:9-12+")))
	want := "timeline 2 from 0/3000100 (2026-12-01 10:03:00Z, end of A) to 0/C004000 (2026-12-01 10:12:00Z); " +
		"timeline 1 from 0/3000100 (2026-12-01 10:03:00Z, end of A) to 0/B000000 (2026-12-01 10:10:00Z)"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// The oldest full's WAL is partly gone: the window starts at the next.
	got = DescribeWindows(Windows(fulls, archive(nil, "1:7-12+")))
	if want := "timeline 1 from 0/8000100 (2026-12-01 10:08:00Z, end of B) to 0/C004000"; !strings.HasPrefix(got, want) {
		t.Errorf("got  %s\nwant %s...", got, want)
	}
	if got := DescribeWindows(Windows(fulls, archive(nil))); !strings.HasPrefix(got, "nothing") {
		t.Errorf("empty archive: %s", got)
	}
}

func TestLatest(t *testing.T) {
	two := map[int][]state.TimelineSwitch{2: {{Parent: 1, SwitchLSN: at(9, 0x100)}}}
	c, err := Latest(full("B", 1, 8), archive(two, "1:2-10", "2:9-12+"))
	if err != nil || c.Timeline != 2 || names(c.Segments) != "1:8 2:9 2:10 2:11 2:12+" || c.End != at(12, 0x4000) ||
		c.Settings["recovery_target_timeline"] != "2" || c.Settings["recovery_target_time"] != "" {
		t.Errorf("latest: %+v, %v", c, err)
	}
	if _, err := Latest(full("B", 1, 8), archive(nil, "1:2-9", "1:11-12+")); err == nil || !strings.Contains(err.Error(), "misses 00000001000000000000000A") {
		t.Errorf("a gap: %v", err)
	}
	if _, err := Latest(full("B", 1, 8), archive(nil, "1:9-12+")); err == nil || !strings.Contains(err.Error(), "does not hold 000000010000000000000008") {
		t.Errorf("the archive starts after the full: %v", err)
	}
}
