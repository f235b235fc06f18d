package walarchive

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pgha/pgha/state"
)

func TestNamesRoundTrip(t *testing.T) {
	const seg16MB = 16 << 20
	seg := SegmentName(3, 0x1_2345_6789, seg16MB)
	if seg != "000000030000000100000023" {
		t.Fatalf("SegmentName = %s", seg)
	}
	start, err := SegmentStart(seg, seg16MB)
	if err != nil || start != 0x1_2300_0000 {
		t.Fatalf("SegmentStart = %x, %v", start, err)
	}
	cases := []struct {
		key  string
		kind Kind
		name string
		comp string
	}{
		{SegmentKey("demo", seg, "zstd"), Segment, seg, "zstd"},
		{SegmentKey("demo", seg, "gzip"), Segment, seg, "gzip"},
		{SegmentKey("demo", seg, "none"), Segment, seg, "none"},
		{PartialKey("demo", seg, "zstd"), Partial, seg, "zstd"},
		{PartialKey("demo", seg, "gzip"), Partial, seg, "gzip"},
		{PartialKey("demo", seg, "none"), Partial, seg, "none"},
		{HistoryKey("demo", 3), History, "00000003.history", ""},
	}
	for _, c := range cases {
		e, ok := Parse("demo", c.key)
		if !ok || e.Kind != c.kind || e.Name != c.name || e.Compression != c.comp || e.Timeline != 3 {
			t.Errorf("Parse(%s) = %+v, %v", c.key, e, ok)
		}
	}
	if e, _ := Parse("demo", SegmentKey("demo", seg, "zstd")); e.Log != 1 || e.Seg != 0x23 {
		t.Errorf("log/seg = %d/%d", e.Log, e.Seg)
	}
	// backup.Dir hides names ending in ".partial" (its temporary files):
	// no archive object may end so.
	for _, comp := range []string{"zstd", "gzip", "none"} {
		if k := PartialKey("demo", seg, comp); strings.HasSuffix(k, ".partial") {
			t.Errorf("PartialKey(%s) = %s, which a store hides", comp, k)
		}
	}
	for _, bad := range []string{
		"demo/wal/0000000300000001/000000030000000100000023.partial", // a store's temporary file of an uncompressed segment
		"demo/20261201T000000Z-full/manifest.json",
		"demo/wal/0000000300000001/000000030000000100000023.zst.partial", // a store's temporary file
		"demo/wal/0000000300000002/000000030000000100000023.zst",         // wrong folder
		"other/wal/00000003.history",
		"demo/wal/3.history",
	} {
		if e, ok := Parse("demo", bad); ok {
			t.Errorf("Parse(%s) accepted: %+v", bad, e)
		}
	}
}

func TestStatusKeyIsNoEntry(t *testing.T) {
	if k := StatusKey("c"); k != "c/wal/status.json" {
		t.Fatalf("StatusKey = %q", k)
	}
	if _, ok := Parse("c", StatusKey("c")); ok {
		t.Fatal("the status object parsed as an archive entry")
	}
}

func TestRunsAndMissing(t *testing.T) {
	const seg = 16 << 20
	var entries []Entry
	add := func(key string) {
		e, ok := Parse("c", key)
		if !ok {
			t.Fatalf("Parse(%q)", key)
		}
		entries = append(entries, e)
	}
	// Timeline 1: segments 3-5 and 7 (6 is missing); timeline 2 from
	// 0/7800000 (inside segment 7): segments 7-8 and the partial 9.
	for _, n := range []string{"000000010000000000000003", "000000010000000000000004", "000000010000000000000005", "000000010000000000000007",
		"000000020000000000000007", "000000020000000000000008"} {
		add(SegmentKey("c", n, "zstd"))
	}
	add(PartialKey("c", "000000020000000000000009", "zstd"))
	add(HistoryKey("c", 2))
	runs := Runs(entries, seg)
	want := []state.SegmentRun{{Timeline: 1, First: "000000010000000000000003", Last: "000000010000000000000005"}, {Timeline: 1, First: "000000010000000000000007", Last: "000000010000000000000007"},
		{Timeline: 2, First: "000000020000000000000007", Last: "000000020000000000000008"}}
	if !reflect.DeepEqual(runs, want) {
		t.Fatalf("Runs = %+v, want %+v", runs, want)
	}
	path := Path([]state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x7800000}}, 2)
	partials := []string{"000000020000000000000009"}
	for _, tc := range []struct {
		name     string
		from, to uint64
		want     []string
	}{
		{"from segment 3 to the partial: 6 is missing", 0x3000028, 0x9000100, []string{"000000010000000000000006"}},
		{"from after the gap", 0x7000000, 0x9000100, nil},
		{"the switch segment comes from timeline 2", 0x7900000, 0x8000100, nil},
		{"past the partial: 10 is missing", 0x7900000, 0xA000100, []string{"00000002000000000000000A"}},
		{"to at a segment's first byte needs nothing of it", 0x3000000, 0x5000000, nil},
		{"before the archive", 0x1000000, 0x3000000, []string{"000000010000000000000001", "000000010000000000000002"}},
	} {
		if got := Missing(runs, partials, path, tc.from, tc.to, seg, 10); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Missing = %v, want %v", tc.name, got, tc.want)
		}
	}
}
