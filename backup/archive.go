package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/state"
)

// Archiver stores a WAL stream into the repository as the continuous
// archive (walarchive's layout): each complete segment once, compressed;
// the segment being written as a partial object rewritten every
// FlushEvery; the history files; and a status object with the durable
// position, rewritten at most every second. It implements postgres.WALSink: the stream reports to the
// server only what Flush returns, so the slot keeps what is not stored.
type Archiver struct {
	Store       Store
	Cluster     string
	Compression string // gzip | zstd | none
	Level       int
	// FlushEvery bounds how far the partial segment lags the stream.
	FlushEvery time.Duration
	// Node names the server streamed from, for the status object.
	Node, SystemID string
	// Stored, if set, hears each position made durable (for logs, the
	// benchmark); it must not block.
	Stored func(state.ArchiveStatus)
	Now    func() time.Time

	// frame compresses WAL into one self-contained frame (a zstd frame,
	// a gzip member) appended to dst; a segment's object is the frames
	// of what arrived between flushes, one after the other, which any
	// reader reads as one stream. Each byte is compressed once: a flush
	// costs what arrived since the last one, not the whole segment.
	frame func(dst, src []byte) ([]byte, error)
	zeros map[int][]byte // frames of 1<<k zero bytes, for the padding

	comp     []byte // the frames of buf[:stored]
	tl       int
	segSize  int
	cur      state.LSN // the first byte of the segment in buf
	buf      []byte
	filled   int // bytes of buf received
	stored   int // bytes of buf durable (in the partial object)
	last     time.Time
	status   time.Time // the status object's last write
	statusAt state.LSN // the position it holds
	durable  state.LSN
	durTL    int
	flushedA time.Time
}

// statusMin is how often at most the status object is rewritten while
// the position moves: it is for the plan, which shows a lag in seconds,
// and its own synced write would double what each flush costs.
const statusMin = time.Second

// statusEvery is how often an idle receiver rewrites its status, so that
// the plan tells a quiet primary from a stopped receiver.
const statusEvery = 5 * time.Second

func (a *Archiver) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Begin starts a segment buffer at start on timeline tl. What an earlier
// connection received past the durable position is streamed again.
func (a *Archiver) Begin(tl int, start state.LSN, segSize int) error {
	if len(a.buf) != segSize {
		a.buf = make([]byte, segSize)
	}
	clear(a.buf)
	a.tl, a.segSize, a.cur, a.filled, a.stored, a.comp = tl, segSize, start, 0, 0, a.comp[:0]
	if a.frame == nil {
		var err error
		if a.frame, err = frameCompressor(a.Compression, a.Level); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		a.zeros = map[int][]byte{}
	}
	// The slot lets one receiver stream at a time: a temporary object
	// left under one of the names written next is a crashed receiver's.
	seg := walarchive.SegmentName(tl, uint64(start), uint64(segSize))
	for _, k := range []string{walarchive.StatusKey(a.Cluster), walarchive.PartialKey(a.Cluster, seg, a.Compression), walarchive.SegmentKey(a.Cluster, seg, a.Compression)} {
		if err := abandon(a.Store, k); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	return nil
}

// Write copies WAL into the segment buffer and stores the segment when it
// is complete.
func (a *Archiver) Write(pos state.LSN, data []byte) error {
	if a.buf == nil || pos < a.cur || int(pos-a.cur)+len(data) > a.segSize {
		return fmt.Errorf("archive: WAL at %s outside segment %s", pos, walarchive.SegmentName(a.tl, uint64(a.cur), uint64(a.segSize)))
	}
	off := int(pos - a.cur)
	copy(a.buf[off:], data)
	a.filled = off + len(data)
	if a.filled == a.segSize {
		return a.complete(a.cur + state.LSN(a.segSize))
	}
	return nil
}

// EndTimeline stores the timeline's last segment, zero-padded past the
// switch point, as a complete segment (recovery along the next timeline
// reads that timeline's copy of it; recovery to a point before the
// switch reads this one).
func (a *Archiver) EndTimeline(switchLSN state.LSN) error {
	if a.filled == 0 {
		return nil
	}
	return a.complete(switchLSN)
}

// complete stores the segment in buf, removes its partial object, and
// moves on to the next segment. upTo is where its WAL ends.
func (a *Archiver) complete(upTo state.LSN) error {
	ctx := context.Background()
	seg := walarchive.SegmentName(a.tl, uint64(a.cur), uint64(a.segSize))
	if err := a.compress(a.segSize); err != nil {
		return err
	}
	if err := a.put(ctx, walarchive.SegmentKey(a.Cluster, seg, a.Compression), 0); err != nil {
		return err
	}
	if err := a.Store.Delete(ctx, walarchive.PartialKey(a.Cluster, seg, a.Compression)); err != nil {
		return fmt.Errorf("archive: remove the partial of %s: %w", seg, err)
	}
	a.cur += state.LSN(a.segSize)
	clear(a.buf)
	a.filled, a.stored, a.comp = 0, 0, a.comp[:0]
	return a.durableAt(upTo)
}

// History stores a timeline history file as it is.
func (a *Archiver) History(name string, content []byte) error {
	var tli int
	if _, err := fmt.Sscanf(name, "%08X.history", &tli); err != nil {
		return fmt.Errorf("archive: %q is not a history file name", name)
	}
	if err := abandon(a.Store, walarchive.HistoryKey(a.Cluster, tli)); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return a.Store.Put(context.Background(), walarchive.HistoryKey(a.Cluster, tli), func(w io.Writer) error {
		_, err := w.Write(content)
		return err
	})
}

// Flush stores the partial segment when FlushEvery has passed since the
// last store and WAL arrived since, and returns the durable position.
func (a *Archiver) Flush(now time.Time) (state.LSN, error) {
	if a.filled > a.stored && now.Sub(a.last) >= a.FlushEvery {
		seg := walarchive.SegmentName(a.tl, uint64(a.cur), uint64(a.segSize))
		if err := a.compress(a.filled); err != nil {
			return a.durable, err
		}
		// The whole segment, zero-padded as pg_receivewal pads its
		// .partial files: recovery reads segments of full size.
		if err := a.put(context.Background(), walarchive.PartialKey(a.Cluster, seg, a.Compression), a.segSize-a.filled); err != nil {
			return a.durable, err
		}
		if err := a.durableAt(a.cur + state.LSN(a.filled)); err != nil {
			return a.durable, err
		}
	}
	since := now.Sub(a.status)
	if !a.flushedA.IsZero() && (since >= statusEvery || (since >= statusMin && a.statusAt != a.durable)) {
		if err := a.writeStatus(); err != nil {
			return a.durable, err
		}
	}
	return a.durable, nil
}

// durableAt records that the archive holds the WAL up to lsn; the status
// object follows within statusMin (Flush).
func (a *Archiver) durableAt(lsn state.LSN) error {
	a.last = a.now()
	a.durable, a.durTL, a.flushedA = lsn, a.tl, a.last
	if a.Stored != nil {
		a.Stored(a.Status())
	}
	return nil
}

func (a *Archiver) writeStatus() error {
	st := a.Status()
	st.WrittenAt = a.now()
	js, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := a.Store.Put(context.Background(), walarchive.StatusKey(a.Cluster), func(w io.Writer) error {
		_, err := w.Write(js)
		return err
	}); err != nil {
		return fmt.Errorf("archive: write status: %w", err)
	}
	a.status, a.statusAt = st.WrittenAt, st.Flushed
	return nil
}

// Status is the archive's durable position now.
func (a *Archiver) Status() state.ArchiveStatus {
	return state.ArchiveStatus{Timeline: a.durTL, Flushed: a.durable, FlushedAt: a.flushedA, Node: a.Node, SystemID: a.SystemID, SegmentSize: a.segSize}
}

// compress adds buf[stored:upTo] to the segment's frames.
func (a *Archiver) compress(upTo int) error {
	if upTo <= a.stored {
		return nil
	}
	var err error
	if a.comp, err = a.frame(a.comp, a.buf[a.stored:upTo]); err != nil {
		return fmt.Errorf("archive: compress: %w", err)
	}
	a.stored = upTo
	return nil
}

// put stores the segment's frames under key, then pad zero bytes (as
// frames of 1<<k zeros, made once each).
func (a *Archiver) put(ctx context.Context, key string, pad int) error {
	err := a.Store.Put(ctx, key, func(w io.Writer) error {
		if _, err := w.Write(a.comp); err != nil {
			return err
		}
		for k := 30; k >= 0; k-- {
			if pad&(1<<k) == 0 {
				continue
			}
			z, ok := a.zeros[k]
			if !ok {
				var err error
				if z, err = a.frame(nil, make([]byte, 1<<k)); err != nil {
					return err
				}
				a.zeros[k] = z
			}
			if _, err := w.Write(z); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive: store %s: %w", key, err)
	}
	return nil
}

// frameCompressor makes self-contained frames of the repository's
// compression, at level 1 unless the backup block sets a level: the
// archive compresses as the WAL comes, and must keep up with it.
func frameCompressor(kind string, level int) (func(dst, src []byte) ([]byte, error), error) {
	if level == 0 {
		level = 1
	}
	switch kind {
	case "gzip":
		if _, err := gzip.NewWriterLevel(io.Discard, level); err != nil {
			return nil, err
		}
		return gzipChunk(level), nil
	case "zstd":
		return zstdChunk(level)
	case "none", "":
		return func(dst, src []byte) ([]byte, error) { return append(dst, src...), nil }, nil
	}
	return nil, fmt.Errorf("unknown compression %q", kind)
}

// ReadArchiveStatus reads the receiver's status object; nil when there is none.
func ReadArchiveStatus(ctx context.Context, st Store, cluster string) (*state.ArchiveStatus, error) {
	js, err := readObject(ctx, st, walarchive.StatusKey(cluster))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var s state.ArchiveStatus
	if err := json.Unmarshal(js, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", walarchive.StatusKey(cluster), err)
	}
	return &s, nil
}

// ObserveArchive summarizes what the repository holds of a cluster's WAL
// archive for the plan: the receiver's status, the complete segments as
// runs, the partial ones, and the newest timeline's history. Nil when
// there is no archive. It reads names and small objects only, never a
// segment.
func ObserveArchive(st Store, cluster string) *state.Archive {
	ctx := context.Background()
	keys, err := st.List(ctx, walarchive.Prefix(cluster))
	if err != nil {
		return &state.Archive{Error: err.Error()}
	}
	if len(keys) == 0 {
		return nil
	}
	out := &state.Archive{}
	if out.Status, err = ReadArchiveStatus(ctx, st, cluster); err != nil {
		out.Error = err.Error()
	}
	var entries []walarchive.Entry
	for _, k := range keys {
		e, ok := walarchive.Parse(cluster, k)
		if !ok {
			continue
		}
		entries = append(entries, e)
		switch e.Kind {
		case walarchive.Segment:
			out.Segments++
		case walarchive.Partial:
			out.Partials = append(out.Partials, e.Name)
		case walarchive.History:
			if e.Timeline > out.HistoryTimeline {
				out.HistoryTimeline = e.Timeline
			}
		}
	}
	segSize := uint64(16 << 20)
	if out.Status != nil && out.Status.SegmentSize > 0 {
		segSize = uint64(out.Status.SegmentSize)
	}
	out.Runs = walarchive.Runs(entries, segSize)
	if out.HistoryTimeline > 0 {
		data, err := readObject(ctx, st, walarchive.HistoryKey(cluster, out.HistoryTimeline))
		if err != nil {
			out.Error = err.Error()
		} else {
			out.History = pgdata.ParseHistory(string(data))
		}
	}
	return out
}

// ExpireWAL removes the archive's segments (complete and partial) that
// end at or before before, and returns how many went. It never goes
// past the start of the oldest complete physical full the repository
// still holds, whatever before says: a plan made earlier must not cost
// a chain kept since. History files stay.
func ExpireWAL(ctx context.Context, st Store, cluster string, before state.LSN) (int, error) {
	all, err := Repository(st, cluster)
	if err != nil {
		return 0, err
	}
	keep, full := policy.WALKeepFrom(all, nil)
	if full == nil {
		return 0, nil // no full kept: the WAL is all there is
	}
	before = min(before, keep)
	status, err := ReadArchiveStatus(ctx, st, cluster)
	if err != nil {
		return 0, err
	}
	if status != nil && status.SystemID != "" && full.SystemID != "" && status.SystemID != full.SystemID {
		return 0, nil // another system's archive: not this retention's to cut
	}
	segSize := uint64(16 << 20)
	if status != nil && status.SegmentSize > 0 {
		segSize = uint64(status.SegmentSize)
	}
	keys, err := st.List(ctx, walarchive.Prefix(cluster))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		e, ok := walarchive.Parse(cluster, k)
		if !ok || !walarchive.Expired(e, uint64(before), segSize) {
			continue
		}
		if err := st.Delete(ctx, k); err != nil {
			return n, fmt.Errorf("expire %s: %w", k, err)
		}
		n++
	}
	return n, nil
}
