// Package walarchive names the objects of the continuous WAL archive in a
// backup repository. The receiver (which writes them) and point-in-time
// restore and drills (which read them) agree on nothing else, so the
// names live here, pure, below both.
//
// Layout, beside the backups of the same cluster (CLUSTER/ID/...):
//
//	CLUSTER/wal/TTTTTTTTLLLLLLLL/TTTTTTTTLLLLLLLLSSSSSSSS.zst          a complete segment
//	CLUSTER/wal/TTTTTTTTLLLLLLLL/TTTTTTTTLLLLLLLLSSSSSSSS.partial.zst  the segment being written
//	                                                       (.partial.raw uncompressed)
//	CLUSTER/wal/TTTTTTTT.history                                      a timeline's history file
//	CLUSTER/wal/status.json                                           the receiver's position (Status)
//
// Segments are grouped by their first 16 hex digits (timeline and log
// number: 256 segments of 16 MB per folder), as pgBackRest groups them,
// so no folder grows without bound. The extension is the repository's
// compression (".zst", ".gz" or none); history files are stored as they
// are, being a few hundred bytes. A partial object is replaced at every
// flush and removed once its complete segment is stored.
package walarchive

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pgha/pgha/state"
)

// Dir is the folder name under the cluster's prefix.
const Dir = "wal"

// Kind says what an archive object is.
type Kind int

const (
	Segment Kind = iota + 1 // a complete WAL segment
	Partial                 // the segment still being written
	History                 // a timeline history file
)

// Entry is one archive object, parsed from its name.
type Entry struct {
	Key         string // the object's name in the store
	Kind        Kind
	Name        string // the file name PostgreSQL knows: 24 hex digits, or TTTTTTTT.history
	Timeline    int
	Log, Seg    uint32 // the segment's log and segment numbers (segments only)
	Compression string // gzip | zstd | none (segments only)
}

// Ext is the object extension of a compression.
func Ext(compression string) string {
	switch compression {
	case "gzip":
		return ".gz"
	case "zstd":
		return ".zst"
	}
	return ""
}

// Prefix is where a cluster's archive lives: every archive object's name
// starts with it.
func Prefix(cluster string) string { return path.Join(cluster, Dir) + "/" }

// SegmentKey names the complete segment seg (24 hex digits).
func SegmentKey(cluster, seg, compression string) string {
	return path.Join(cluster, Dir, seg[:16], seg+Ext(compression))
}

// PartialKey names the segment seg while it is being written. Without
// compression it ends in ".partial.raw", not ".partial": a store writes
// an object through a temporary "NAME.partial" file and hides such names
// from List, which would hide the archive's newest WAL from restores.
func PartialKey(cluster, seg, compression string) string {
	ext := Ext(compression)
	if ext == "" {
		ext = rawExt
	}
	return path.Join(cluster, Dir, seg[:16], seg+".partial"+ext)
}

// rawExt marks an uncompressed partial segment (see PartialKey).
const rawExt = ".raw"

// HistoryKey names the history file of timeline tli.
func HistoryKey(cluster string, tli int) string {
	return path.Join(cluster, Dir, HistoryName(tli))
}

// StatusKey names the receiver's status object: where the archive is
// durable up to, on which timeline, and when, rewritten at every flush so
// that `pgha plan` can show the archive's lag without asking the receiver.
func StatusKey(cluster string) string { return path.Join(cluster, Dir, "status.json") }

// HistoryName is PostgreSQL's name for timeline tli's history file.
func HistoryName(tli int) string { return fmt.Sprintf("%08X.history", tli) }

// SegmentName is PostgreSQL's name for the segment holding lsn on
// timeline tli, for segments of segSize bytes.
func SegmentName(tli int, lsn uint64, segSize uint64) string {
	perLog := uint64(0x100000000) / segSize
	no := lsn / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, no/perLog, no%perLog)
}

// SegmentStart is the first LSN of segment seg (24 hex digits).
func SegmentStart(seg string, segSize uint64) (uint64, error) {
	if !segRe.MatchString(seg) {
		return 0, fmt.Errorf("%q is not a WAL segment name", seg)
	}
	log, _ := strconv.ParseUint(seg[8:16], 16, 32)
	no, _ := strconv.ParseUint(seg[16:24], 16, 32)
	return log*0x100000000 + no*segSize, nil
}

var (
	segRe  = regexp.MustCompile(`^[0-9A-F]{24}$`)
	histRe = regexp.MustCompile(`^[0-9A-F]{8}\.history$`)
)

// Parse reads an object name under Prefix(cluster); ok is false for
// anything else (a stray file, a store's own temporary object).
func Parse(cluster, key string) (Entry, bool) {
	rest, found := strings.CutPrefix(key, Prefix(cluster))
	if !found {
		return Entry{}, false
	}
	e := Entry{Key: key}
	if histRe.MatchString(rest) {
		tli, _ := strconv.ParseUint(rest[:8], 16, 32)
		e.Kind, e.Name, e.Timeline = History, rest, int(tli)
		return e, true
	}
	dir, file := path.Split(rest)
	if len(dir) != 17 || len(file) < 24 || !segRe.MatchString(file[:24]) || dir[:16] != file[:16] {
		return Entry{}, false
	}
	e.Name = file[:24]
	suffix := file[24:]
	e.Kind = Segment
	if s, ok := strings.CutPrefix(suffix, ".partial"); ok {
		if s == "" {
			return Entry{}, false // a store's temporary file, or a name of no compression
		}
		if s == rawExt {
			s = ""
		}
		e.Kind, suffix = Partial, s
	}
	switch suffix {
	case ".zst":
		e.Compression = "zstd"
	case ".gz":
		e.Compression = "gzip"
	case "":
		e.Compression = "none"
	default:
		return Entry{}, false
	}
	tli, _ := strconv.ParseUint(e.Name[:8], 16, 32)
	log, _ := strconv.ParseUint(e.Name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(e.Name[16:24], 16, 32)
	e.Timeline, e.Log, e.Seg = int(tli), uint32(log), uint32(seg)
	return e, true
}

// segNo is a segment's number from the start of the WAL (log*per-log+seg).
func segNo(e Entry, segSize uint64) uint64 {
	return uint64(e.Log)*(0x100000000/segSize) + uint64(e.Seg)
}

// Runs summarizes the complete segments among entries as runs of
// consecutive segments per timeline, ordered by timeline then position:
// what the plan needs to find a gap, without every name.
func Runs(entries []Entry, segSize uint64) []state.SegmentRun {
	byTL := map[int][]uint64{}
	names := map[[2]uint64]string{}
	for _, e := range entries {
		if e.Kind != Segment {
			continue
		}
		no := segNo(e, segSize)
		byTL[e.Timeline] = append(byTL[e.Timeline], no)
		names[[2]uint64{uint64(e.Timeline), no}] = e.Name
	}
	tls := make([]int, 0, len(byTL))
	for tl := range byTL {
		tls = append(tls, tl)
	}
	sort.Ints(tls)
	var out []state.SegmentRun
	for _, tl := range tls {
		nos := byTL[tl]
		sort.Slice(nos, func(i, j int) bool { return nos[i] < nos[j] })
		start := 0
		for i := 1; i <= len(nos); i++ {
			if i < len(nos) && nos[i] <= nos[i-1]+1 {
				continue
			}
			out = append(out, state.SegmentRun{Timeline: tl, First: names[[2]uint64{uint64(tl), nos[start]}], Last: names[[2]uint64{uint64(tl), nos[i-1]}]})
			start = i
		}
	}
	return out
}

// Missing lists the segments recovery would read from from to to along a
// timeline's path that runs (and the partial segment holding to, named in
// partials) do not hold, at most limit of them. path gives each timeline
// of the history with where it begins, oldest first: a segment is read
// from the newest timeline beginning at or before it, as recovery does.
func Missing(runs []state.SegmentRun, partials []string, path []Span, from, to uint64, segSize uint64, limit int) []string {
	have := func(tl int, no uint64) bool {
		for _, r := range runs {
			if r.Timeline != tl {
				continue
			}
			a, err1 := SegmentStart(r.First, segSize)
			b, err2 := SegmentStart(r.Last, segSize)
			if err1 == nil && err2 == nil && a/segSize <= no && no <= b/segSize {
				return true
			}
		}
		for _, p := range partials {
			if s, err := SegmentStart(p, segSize); err == nil && s/segSize == no && p[:8] == fmt.Sprintf("%08X", tl) {
				return true
			}
		}
		return false
	}
	var out []string
	for no := from / segSize; no <= to/segSize && len(out) < limit; no++ {
		if no == to/segSize && to%segSize == 0 && no > from/segSize {
			break // to is the first byte of this segment: nothing of it is needed
		}
		tl := 0
		for _, s := range path {
			if s.From/segSize <= no {
				tl = s.Timeline
			}
		}
		if !have(tl, no) {
			out = append(out, SegmentName(tl, no*segSize, segSize))
		}
	}
	return out
}

// Span is a timeline of a history and where it begins.
type Span struct {
	Timeline int
	From     uint64
}

// Path is timeline tli's history as spans, oldest first, from its
// history file's entries.
func Path(history []state.TimelineSwitch, tli int) []Span {
	var out []Span
	var from uint64
	for _, sw := range history {
		out = append(out, Span{Timeline: sw.Parent, From: from})
		from = uint64(sw.SwitchLSN)
	}
	return append(out, Span{Timeline: tli, From: from})
}

// CountBefore counts the segments (complete, and partial names) that end
// at or before lsn: what retention removes when the oldest chain kept
// starts at lsn.
func CountBefore(runs []state.SegmentRun, partials []string, lsn, segSize uint64) int {
	n := 0
	for _, r := range runs {
		a, err1 := SegmentStart(r.First, segSize)
		b, err2 := SegmentStart(r.Last, segSize)
		if err1 != nil || err2 != nil {
			continue
		}
		for s := a; s <= b && s+segSize <= lsn; s += segSize {
			n++
		}
	}
	for _, p := range partials {
		if s, err := SegmentStart(p, segSize); err == nil && s+segSize <= lsn {
			n++
		}
	}
	return n
}

// Expired says whether entry e goes when the oldest chain kept starts at
// lsn: a segment (complete or partial) that ends at or before it. History
// files stay: they are small and recovery follows timelines by them.
func Expired(e Entry, lsn, segSize uint64) bool {
	if e.Kind == History {
		return false
	}
	s, err := SegmentStart(e.Name, segSize)
	return err == nil && s+segSize <= lsn
}
