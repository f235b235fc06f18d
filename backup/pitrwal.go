package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgha/pgha/backup/pitr"
	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/state"
)

// modTimer is a store that knows when an object was written: the
// archive's times say how far a time target can reach.
type modTimer interface {
	Modified(name string) (time.Time, error)
}

// Modified is when the object was last written (the file's mtime).
func (d Dir) Modified(name string) (time.Time, error) {
	p, err := d.path(name)
	if err != nil {
		return time.Time{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// ReadArchive reads what a cluster's WAL archive holds, for a
// point-in-time restore or its window: the objects' names and times,
// the history files, the segment size (the length of a complete
// segment) and how far the partial segments go. With restorePoint set,
// it also scans the archived segments for that restore point's record
// (its name, NUL-terminated, in the record's data), which only the WAL
// says the place of.
func ReadArchive(repo Store, cluster, restorePoint string) (*pitr.Archive, error) {
	ctx := context.Background()
	st := repo
	keys, err := st.List(ctx, walarchive.Prefix(cluster))
	if err != nil {
		return nil, fmt.Errorf("list the WAL archive: %w", err)
	}
	var entries []walarchive.Entry
	for _, k := range keys {
		if e, ok := walarchive.Parse(cluster, k); ok {
			entries = append(entries, e)
		}
	}
	var segSize uint64
	for _, e := range entries {
		if e.Kind == walarchive.Segment {
			n, err := segmentLen(st, e)
			if err != nil {
				return nil, err
			}
			segSize = uint64(n)
			break
		}
	}
	a := pitr.NewArchive(entries, segSize)
	mt, _ := st.(modTimer)
	for _, e := range entries {
		if mt != nil {
			if t, err := mt.Modified(e.Key); err == nil {
				a.Written[e.Key] = t
			}
		}
		switch e.Kind {
		case walarchive.History:
			data, err := readObject(ctx, st, e.Key)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", e.Key, err)
			}
			a.History[e.Timeline] = pgdata.ParseHistory(string(data))
		case walarchive.Partial:
			data, err := ReadSegment(repo, e)
			if err != nil {
				return nil, err
			}
			start, _ := walarchive.SegmentStart(e.Name, a.SegSize)
			a.PartialEnd[e.Key] = state.LSN(start + uint64(len(bytes.TrimRight(data, "\x00"))))
		}
	}
	if restorePoint != "" {
		if err := findRestorePoint(repo, a, restorePoint); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// findRestorePoint records, per timeline, the first archived segment
// position where the restore point's name appears NUL-terminated.
func findRestorePoint(repo Store, a *pitr.Archive, name string) error {
	needle := append([]byte(name), 0)
	for _, tli := range a.Timelines() {
		segs := a.Segments[tli]
		nos := make([]uint64, 0, len(segs))
		for no := range segs {
			nos = append(nos, no)
		}
		slices.Sort(nos)
		for _, no := range nos {
			data, err := ReadSegment(repo, segs[no])
			if err != nil {
				return err
			}
			if i := bytes.Index(data, needle); i >= 0 {
				a.Found[tli] = state.LSN(no*a.SegSize + uint64(i))
				break
			}
		}
	}
	return nil
}

// segmentLen is the uncompressed length of an archived segment.
func segmentLen(st Store, e walarchive.Entry) (int64, error) {
	rc, err := openEntry(st, e)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", e.Key, err)
	}
	return n, nil
}

// ReadSegment reads an archived segment, decompressed.
func ReadSegment(repo Store, e walarchive.Entry) ([]byte, error) {
	rc, err := openEntry(repo, e)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Key, err)
	}
	return data, nil
}

func openEntry(st Store, e walarchive.Entry) (io.ReadCloser, error) {
	f, err := st.Get(context.Background(), e.Key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Key, err)
	}
	switch e.Compression {
	case "gzip":
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w", e.Key, err)
		}
		return readCloser{zr, f}, nil
	case "zstd":
		zr, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w", e.Key, err)
		}
		return readCloser{zr.IOReadCloser(), f}, nil
	}
	return f, nil
}

// ArchiveWAL is the archived WAL a point-in-time restore needs, as a tar
// of pg_wal/ entries, like a WAL backup's: each segment decompressed (a
// partial one padded with zeros to the segment size, as recovery reads
// only whole segments), then the history files of the timelines the
// restore follows. It is read once, as it is made.
//
// extra are history files from elsewhere (a node restored over), by
// timeline, for the timelines the archive lacks.
func ArchiveWAL(repo Store, cluster string, c pitr.Choice, segSize uint64, extra map[int][]byte) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeArchiveWAL(pw, repo, cluster, c, segSize, extra))
	}()
	return pr
}

func writeArchiveWAL(w io.Writer, repo Store, cluster string, c pitr.Choice, segSize uint64, extra map[int][]byte) error {
	if segSize == 0 {
		segSize = pitr.DefaultSegSize
	}
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		h := &tar.Header{Name: "pg_wal/" + name, Mode: 0o600, Size: int64(len(data)), ModTime: time.Now(), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, e := range c.Segments {
		data, err := ReadSegment(repo, e)
		if err != nil {
			return err
		}
		if uint64(len(data)) < segSize {
			data = append(data, make([]byte, segSize-uint64(len(data)))...)
		}
		if uint64(len(data)) != segSize {
			return fmt.Errorf("archived segment %s holds %d bytes, not the segment size %d", e.Key, len(data), segSize)
		}
		if err := put(e.Name, data); err != nil {
			return err
		}
	}
	for _, tli := range c.Histories {
		data, err := readObject(context.Background(), repo, walarchive.HistoryKey(cluster, tli))
		if err != nil {
			return fmt.Errorf("read the history of timeline %d: %w", tli, err)
		}
		if err := put(walarchive.HistoryName(tli), data); err != nil {
			return err
		}
	}
	var more []int
	for tli := range extra {
		if !slices.Contains(c.Histories, tli) {
			more = append(more, tli)
		}
	}
	slices.Sort(more)
	for _, tli := range more {
		if err := put(walarchive.HistoryName(tli), extra[tli]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// RestoreArchiveWAL writes the archived WAL of c into a restored data
// directory's pg_wal (over the segments the base backup brought, which
// the archive holds more completely).
func RestoreArchiveWAL(repo Store, cluster string, c pitr.Choice, segSize uint64, extra map[int][]byte, dataDir string) error {
	rc := ArchiveWAL(repo, cluster, c, segSize, extra)
	defer rc.Close()
	if err := extractWAL(rc, dataDir); err != nil {
		return fmt.Errorf("copy the archived WAL into %s: %w", dataDir, err)
	}
	return os.WriteFile(dataDir+"/recovery.signal", nil, 0o600)
}
