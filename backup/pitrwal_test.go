package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pgha/pgha/backup/pitr"
	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/state"
)

// TestArchiveWAL writes a small archive (1 MiB segments, zstd and gzip
// and none, a zero-padded partial, a history file) and reads it back as
// a point-in-time restore does: the segment size from a complete
// segment, how far the partial goes, where a restore point's name is,
// and the tar for pg_wal with every segment whole.
func TestArchiveWAL(t *testing.T) {
	const ss = 1 << 20
	repo := t.TempDir()
	st := Dir(repo)
	ctx := context.Background()
	put := func(key, compression string, data []byte) {
		t.Helper()
		err := st.Put(ctx, key, func(w io.Writer) error {
			cw, err := compressor(w, compression, 0)
			if err != nil {
				return err
			}
			if _, err := cw.Write(data); err != nil {
				return err
			}
			return cw.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	seg := func(fill byte) []byte { return bytes.Repeat([]byte{fill}, ss) }
	name := func(tli int, no uint64) string { return walarchive.SegmentName(tli, no*ss, ss) }
	put(walarchive.SegmentKey("c", name(1, 1), "zstd"), "zstd", seg(1))
	withPoint := seg(2)
	copy(withPoint[0x1234:], "nightly\x00")
	put(walarchive.SegmentKey("c", name(1, 2), "gzip"), "gzip", withPoint)
	put(walarchive.SegmentKey("c", name(2, 2), "none"), "none", withPoint)
	partial := make([]byte, ss) // padded as the receiver pads it
	copy(partial, bytes.Repeat([]byte{3}, 0x3000))
	put(walarchive.PartialKey("c", name(2, 3), "zstd"), "zstd", partial)
	history := []byte("1\t0/210000\tno recovery target specified\n")
	if err := st.Put(ctx, walarchive.HistoryKey("c", 2), func(w io.Writer) error { _, err := w.Write(history); return err }); err != nil {
		t.Fatal(err)
	}

	a, err := ReadArchive(st, "c", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if a.SegSize != ss {
		t.Fatalf("segment size %d, want %d", a.SegSize, ss)
	}
	pk := walarchive.PartialKey("c", name(2, 3), "zstd")
	if got, want := a.PartialEnd[pk], state.LSN(3*ss+0x3000); got != want {
		t.Errorf("the partial ends at %s, want %s", got, want)
	}
	if got, want := a.Found[1], state.LSN(2*ss+0x1234); got != want {
		t.Errorf("restore point found at %s on timeline 1, want %s", got, want)
	}
	if len(a.History[2]) != 1 || a.History[2][0].SwitchLSN != 0x210000 || a.Written[pk].IsZero() {
		t.Errorf("history %v, partial written %v", a.History, a.Written[pk])
	}

	full := state.Backup{ID: "F", Type: "full", Status: "complete", Timeline: 1, StopLSN: state.LSN(ss + 0x100).String()}
	c, err := pitr.Choose([]state.Backup{full}, a, pitr.Target{LSN: state.LSN(3*ss + 0x1000)})
	if err != nil {
		t.Fatal(err)
	}
	rc := ArchiveWAL(st, "c", c, a.SegSize, map[int][]byte{2: []byte("not this one"), 3: history})
	defer rc.Close()
	tr := tar.NewReader(rc)
	var got []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if !strings.HasSuffix(h.Name, ".history") && len(data) != ss {
			t.Errorf("%s holds %d bytes, want a whole segment", h.Name, len(data))
		}
		got = append(got, h.Name)
	}
	want := "pg_wal/" + name(1, 1) + " pg_wal/" + name(2, 2) + " pg_wal/" + name(2, 3) + " pg_wal/00000002.history pg_wal/00000003.history"
	if strings.Join(got, " ") != want {
		t.Errorf("tar holds\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}
