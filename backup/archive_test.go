package backup

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/state"
)

// TestArchiver feeds an Archiver a stream by hand: the partial object
// appears only when FlushEvery has passed, holds the WAL so far padded
// to a whole segment, and goes when the segment completes; the durable
// position is what is stored, never what was merely received.
func TestArchiver(t *testing.T) {
	ctx := context.Background()
	st := Dir(t.TempDir())
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a := &Archiver{Store: st, Cluster: "c", Compression: "zstd", FlushEvery: time.Second, Now: func() time.Time { return now }}
	const seg = 1024
	if err := a.Begin(1, 3*seg, seg); err != nil {
		t.Fatal(err)
	}
	wal := bytes.Repeat([]byte("w"), 600)
	if err := a.Write(3*seg, wal); err != nil {
		t.Fatal(err)
	}
	name := walarchive.SegmentName(1, 3*seg, seg)
	// First flush: due (nothing stored yet).
	if d, err := a.Flush(now); err != nil || d != 3*seg+600 {
		t.Fatalf("first flush: durable %s, %v; want %s", d, err, state.LSN(3*seg+600))
	}
	got := read(t, st, walarchive.PartialKey("c", name, "zstd"))
	if len(got) != seg || !bytes.Equal(got[:600], wal) || !bytes.Equal(got[600:], make([]byte, seg-600)) {
		t.Fatalf("the partial holds %d bytes, not the WAL so far padded to a segment", len(got))
	}
	// More WAL, flushed too soon: not durable yet.
	if err := a.Write(3*seg+600, wal[:100]); err != nil {
		t.Fatal(err)
	}
	now = now.Add(500 * time.Millisecond)
	if d, _ := a.Flush(now); d != 3*seg+600 {
		t.Fatalf("a flush before FlushEvery made %s durable", d)
	}
	now = now.Add(500 * time.Millisecond)
	if d, _ := a.Flush(now); d != 3*seg+700 {
		t.Fatalf("the flush after FlushEvery: durable %s, want %s", d, state.LSN(3*seg+700))
	}
	// The segment completes: stored, the partial goes, durable moves at once.
	if err := a.Write(3*seg+700, bytes.Repeat([]byte("z"), seg-700)); err != nil {
		t.Fatal(err)
	}
	if d, _ := a.Flush(now); d != 4*seg {
		t.Fatalf("after the segment completed: durable %s, want %s", d, state.LSN(4*seg))
	}
	if got := read(t, st, walarchive.SegmentKey("c", name, "zstd")); len(got) != seg || got[seg-1] != 'z' {
		t.Fatal("the complete segment is not stored whole")
	}
	if _, err := st.Get(ctx, walarchive.PartialKey("c", name, "zstd")); err == nil {
		t.Fatal("the partial object outlived its complete segment")
	}
	// The status object follows within a second.
	done := now
	if s, _ := ReadArchiveStatus(ctx, st, "c"); s == nil || s.Flushed != 3*seg+700 {
		t.Fatalf("status rewritten less than a second after the last: %+v", s)
	}
	now = now.Add(time.Second)
	if _, err := a.Flush(now); err != nil {
		t.Fatal(err)
	}
	s, err := ReadArchiveStatus(ctx, st, "c")
	if err != nil || s == nil || s.Flushed != 4*seg || s.Timeline != 1 || !s.FlushedAt.Equal(done) || !s.WrittenAt.Equal(now) {
		t.Fatalf("status: %+v, %v", s, err)
	}
	// A history file is stored as it is.
	if err := a.History("00000002.history", []byte("1\t0/C00\tno recovery target specified\n")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, st, walarchive.HistoryKey("c", 2)); !bytes.HasPrefix(got, []byte("1\t0/C00")) {
		t.Fatalf("history: %q", got)
	}
	// A write outside the segment is refused, not stored somewhere wrong.
	if err := a.Write(9*seg, wal); err == nil {
		t.Fatal("WAL outside the current segment was accepted")
	}
}

func read(t *testing.T, st Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if walarchive.HistoryKey("c", 2) == key {
		b, _ := io.ReadAll(rc)
		return b
	}
	zr, err := zstd.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExpireWAL: the segments that end at or before the oldest complete
// full kept go; the segment holding its start, the later ones, the
// partial and the history files stay, whatever the plan asked for.
func TestExpireWAL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := Dir(dir)
	put := func(key string) {
		if err := st.Put(ctx, key, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err }); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for i := 1; i <= 6; i++ {
		n := walarchive.SegmentName(1, uint64(i)<<24, 16<<20)
		names = append(names, n)
		put(walarchive.SegmentKey("c", n, "zstd"))
	}
	put(walarchive.PartialKey("c", walarchive.SegmentName(1, 7<<24, 16<<20), "zstd"))
	put(walarchive.HistoryKey("c", 2))
	// No full at all: nothing goes.
	if n, err := ExpireWAL(ctx, Dir(dir), "c", 0x9000000); err != nil || n != 0 {
		t.Fatalf("without a full, ExpireWAL removed %d (%v)", n, err)
	}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range []state.Backup{
		{ID: "old", Cluster: "c", Type: "full", Status: "expired", StartLSN: "0/1000028", Started: t0},
		{ID: "new", Cluster: "c", Type: "full", Status: "complete", StartLSN: "0/5000028", Started: t0.Add(time.Hour)},
	} {
		if err := writeManifest(ctx, st, b); err != nil {
			t.Fatal(err)
		}
	}
	// The plan asked for more than the kept full allows: capped at its start.
	n, err := ExpireWAL(ctx, Dir(dir), "c", 0x9000000)
	if err != nil || n != 4 {
		t.Fatalf("ExpireWAL removed %d (%v), want segments 1-4", n, err)
	}
	left, _ := st.List(ctx, walarchive.Prefix("c"))
	want := []string{walarchive.SegmentKey("c", names[4], "zstd"), walarchive.SegmentKey("c", names[5], "zstd"),
		walarchive.PartialKey("c", walarchive.SegmentName(1, 7<<24, 16<<20), "zstd"), walarchive.HistoryKey("c", 2)}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Fatalf("left after expiry:\n%v\nwant\n%v", left, want)
	}
}
