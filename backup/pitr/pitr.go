// Package pitr plans a point-in-time restore from what a repository holds:
// the full backups and the continuous WAL archive (backup/walarchive). It
// is pure: it decides which chain to restore, which archived segments and
// history files go into the restored pg_wal, on which timeline recovery
// stops and with which settings; reading the objects is the caller's.
//
// Recovery reads the WAL from pg_wal (restore_command 'false'), so the
// same plan works on every runtime, including official PostgreSQL images
// that have no pgha to fetch WAL with.
package pitr

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/state"
)

// DefaultSegSize is PostgreSQL's WAL segment size unless initdb was told
// otherwise; Archive.SegSize overrides it when a stored segment says.
const DefaultSegSize = 16 << 20

// Target is where recovery stops: exactly one of Time, LSN and Name.
type Target struct {
	Time time.Time
	LSN  state.LSN
	Name string
}

// Kind names the target's kind: time, lsn or name.
func (t Target) Kind() string {
	switch {
	case !t.Time.IsZero():
		return "time"
	case t.LSN != 0:
		return "lsn"
	case t.Name != "":
		return "name"
	}
	return ""
}

func (t Target) String() string {
	switch t.Kind() {
	case "time":
		return t.Time.UTC().Format(time.RFC3339Nano)
	case "lsn":
		return t.LSN.String()
	case "name":
		return fmt.Sprintf("restore point %q", t.Name)
	}
	return "nothing"
}

// ParseTarget reads the restore flags; at most one may be set, none
// means no point-in-time target (zero Target, nil error). A time without
// a zone is UTC.
func ParseTarget(toTime, toLSN, toName string) (Target, error) {
	set := 0
	for _, s := range []string{toTime, toLSN, toName} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		return Target{}, errors.New("-to-time, -to-lsn and -to-restore-point exclude each other: give one")
	}
	var t Target
	switch {
	case toTime != "":
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
			if v, err := time.Parse(layout, toTime); err == nil {
				t.Time = v.UTC()
				return t, nil
			}
		}
		return t, fmt.Errorf("-to-time %q: give an RFC 3339 time, such as 2026-12-01T13:05:00.250Z (no zone: UTC)", toTime)
	case toLSN != "":
		l, err := state.ParseLSN(toLSN)
		if err != nil || l == 0 {
			return t, fmt.Errorf("-to-lsn %q: give an LSN as PostgreSQL writes it, such as 0/5000028", toLSN)
		}
		t.LSN = l
	case toName != "":
		if len(toName) >= 64 {
			return t, fmt.Errorf("-to-restore-point %q: PostgreSQL's restore point names are shorter than 64 bytes", toName)
		}
		t.Name = toName
	}
	return t, nil
}

// Archive is what the WAL archive holds, as Choose needs it.
type Archive struct {
	// SegSize is the WAL segment size (DefaultSegSize when 0).
	SegSize uint64
	// Segments by timeline and segment number: a complete segment, else
	// the partial one being written.
	Segments map[int]map[uint64]walarchive.Entry
	// History holds each timeline's history, parsed (timeline 1 has none).
	History map[int][]state.TimelineSwitch
	// PartialEnd is how far a partial segment's WAL goes, by key (its
	// written length); a partial not listed counts as its start.
	PartialEnd map[string]state.LSN
	// Written is when an object was stored, by key; unknown when absent.
	Written map[string]time.Time
	// Found is where the restore point Target.Name was seen, by
	// timeline; filled by the caller that scanned the WAL for it.
	Found map[int]state.LSN
}

// NewArchive indexes the archive's entries (any order).
func NewArchive(entries []walarchive.Entry, segSize uint64) *Archive {
	if segSize == 0 {
		segSize = DefaultSegSize
	}
	a := &Archive{SegSize: segSize, Segments: map[int]map[uint64]walarchive.Entry{}, History: map[int][]state.TimelineSwitch{},
		PartialEnd: map[string]state.LSN{}, Written: map[string]time.Time{}, Found: map[int]state.LSN{}}
	for _, e := range entries {
		if e.Kind == walarchive.History {
			if _, ok := a.History[e.Timeline]; !ok {
				a.History[e.Timeline] = nil
			}
			continue
		}
		no := a.segNo(e)
		m := a.Segments[e.Timeline]
		if m == nil {
			m = map[uint64]walarchive.Entry{}
			a.Segments[e.Timeline] = m
		}
		if old, ok := m[no]; ok && old.Kind == walarchive.Segment {
			continue // the complete segment wins over a partial left behind
		}
		m[no] = e
	}
	return a
}

func (a *Archive) segNo(e walarchive.Entry) uint64 {
	return (uint64(e.Log)*0x100000000 + uint64(e.Seg)*a.segSize()) / a.segSize()
}

func (a *Archive) segSize() uint64 {
	if a.SegSize == 0 {
		return DefaultSegSize
	}
	return a.SegSize
}

// Timelines are the timelines the archive holds WAL of, highest first.
func (a *Archive) Timelines() []int {
	var out []int
	for tli := range a.Segments {
		out = append(out, tli)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out
}

// Span is one timeline's stretch of a timeline's history: the WAL in
// [From, To) is read on TLI. To is 0 for the last, open-ended span.
type Span struct {
	TLI      int
	From, To state.LSN
}

// Path is timeline tli's history as spans, oldest first, from its
// history file (the ancestors and where each was left).
func Path(history []state.TimelineSwitch, tli int) []Span {
	var out []Span
	var from state.LSN
	for _, sw := range history {
		out = append(out, Span{TLI: sw.Parent, From: from, To: sw.SwitchLSN})
		from = sw.SwitchLSN
	}
	return append(out, Span{TLI: tli, From: from})
}

// tliAt is the timeline whose WAL the path reads at lsn.
func tliAt(path []Span, lsn state.LSN) int {
	for _, s := range path {
		if lsn >= s.From && (s.To == 0 || lsn < s.To) {
			return s.TLI
		}
	}
	return 0
}

// Walk is the archive's WAL along a timeline's path, from a start.
type Walk struct {
	Segments []walarchive.Entry // to copy into pg_wal, in order
	End      state.LSN          // where the contiguous WAL ends
	Written  time.Time          // when the last segment walked was stored (zero: unknown)
	Gap      string             // the segment missing where the walk stopped ("" at the archive's end)
}

// walk follows path from start, segment by segment, as recovery reads
// them: a segment comes from the newest timeline of the path that begins
// at or before it (the segment holding a switch point comes from the new
// timeline, which copied the old one's WAL before it). It stops at the
// first missing segment, after a partial one, or once it has passed
// stop (0: the archive's end) by one segment, the margin recovery needs
// to read the record that ends its target.
func (a *Archive) walk(path []Span, start, stop state.LSN) Walk {
	ss := a.segSize()
	var w Walk
	w.End = start
	for no := uint64(start) / ss; ; no++ {
		tli := 0
		for _, s := range path {
			if uint64(s.From)/ss <= no {
				tli = s.TLI
			}
		}
		e, ok := a.Segments[tli][no]
		if !ok {
			// A stopping point in the middle of nowhere: only a gap if WAL
			// after it exists on this path.
			if a.after(tli, no) {
				w.Gap = walarchive.SegmentName(tli, no*ss, ss)
			}
			return w
		}
		w.Segments = append(w.Segments, e)
		if t, ok := a.Written[e.Key]; ok {
			w.Written = t
		}
		if e.Kind == walarchive.Partial {
			end := a.PartialEnd[e.Key]
			w.End = max(w.End, end, state.LSN(no*ss))
			return w
		}
		w.End = state.LSN((no + 1) * ss)
		if stop != 0 && uint64(stop)/ss < no {
			return w
		}
	}
}

// after says whether the archive holds a segment of tli beyond no.
func (a *Archive) after(tli int, no uint64) bool {
	for n := range a.Segments[tli] {
		if n > no {
			return true
		}
	}
	return false
}

// Choice is a point-in-time restore, planned.
type Choice struct {
	Full      state.Backup       // the full restored first
	Timeline  int                // the timeline recovery follows to the target
	Segments  []walarchive.Entry // archived segments for pg_wal, in order
	Histories []int              // timelines whose history files go into pg_wal (all the archive holds)
	Settings  map[string]string  // the recovery settings
	End       state.LSN          // how far the WAL copied goes
}

// usable are the complete physical fulls, newest first: what a
// point-in-time restore can start from.
func usable(backups []state.Backup) []state.Backup {
	var out []state.Backup
	for _, b := range backups {
		if b.Type == "full" && b.Status == "complete" && (b.Format == "" || b.Format == policy.FormatBase) && b.Method != "logical" {
			out = append(out, b)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Finished.After(out[j].Finished) })
	return out
}

// before says whether full b ended before the target.
func before(b state.Backup, t Target, found state.LSN) bool {
	stop, err := state.ParseLSN(b.StopLSN)
	if err != nil {
		return false
	}
	switch t.Kind() {
	case "time":
		return b.Finished.Before(t.Time)
	case "lsn":
		return stop <= t.LSN
	case "name":
		return found != 0 && stop <= found
	}
	return false
}

// Choose picks the restore for target t: the newest full that ended
// before t from which the archive reaches t without a gap along the
// timeline holding t (the highest timeline whose history leads there),
// and what recovery needs from the archive. When nothing reaches t the
// error names the window that can be recovered.
func Choose(backups []state.Backup, a *Archive, t Target) (Choice, error) {
	if t.Kind() == "" {
		return Choice{}, errors.New("no recovery target")
	}
	fulls := usable(backups)
	if len(fulls) == 0 {
		return Choice{}, errors.New("no complete physical full backup: a point-in-time restore starts from one (pgha backup -type full)")
	}
	if len(a.Segments) == 0 {
		return Choice{}, errors.New("the WAL archive holds no WAL: a point-in-time restore replays it (pgha archive, or pgha watch with the archive on)")
	}
	var why []string
	for _, full := range fulls {
		for _, tli := range a.Timelines() {
			found := a.Found[tli]
			if !before(full, t, found) {
				continue
			}
			c, reason := a.try(full, tli, t, found)
			if reason == "" {
				return c, nil
			}
			why = append(why, fmt.Sprintf("from %s on timeline %d: %s", full.ID, tli, reason))
		}
	}
	msg := fmt.Sprintf("no backup and archived WAL reach %s", t)
	if len(why) > 0 {
		msg += " (" + why[0] + ")"
	} else if t.Kind() == "name" && len(a.Found) == 0 {
		msg = fmt.Sprintf("the archived WAL holds no %s", t)
	} else {
		msg = fmt.Sprintf("no full backup ended before %s", t)
	}
	return Choice{}, fmt.Errorf("%s; recoverable: %s", msg, DescribeWindows(Windows(backups, a)))
}

// try plans the restore of full along timeline tli's path to t, or
// says why it cannot.
func (a *Archive) try(full state.Backup, tli int, t Target, found state.LSN) (Choice, string) {
	stop, _ := state.ParseLSN(full.StopLSN)
	path := Path(a.History[tli], tli)
	if on := tliAt(path, stop); full.Timeline != 0 && on != full.Timeline {
		return Choice{}, fmt.Sprintf("the backup is on timeline %d, which timeline %d's history leaves before %s", full.Timeline, tli, full.StopLSN)
	}
	var limit state.LSN
	switch t.Kind() {
	case "lsn":
		limit = t.LSN
	case "name":
		limit = found
	}
	w := a.walk(path, stop, limit)
	if len(w.Segments) == 0 {
		return Choice{}, fmt.Sprintf("the archive does not hold %s, where the backup ends", walarchive.SegmentName(tliAt(path, stop), uint64(stop), a.segSize()))
	}
	switch t.Kind() {
	case "lsn", "name":
		if w.End <= limit {
			return Choice{}, reach(w, a)
		}
	case "time":
		// Recovery stops at the first commit after t: the archive must
		// have been written after t. Without the times (a store that
		// keeps none) recovery itself says if the WAL ends before t.
		if !w.Written.IsZero() && w.Written.Before(t.Time) {
			if w.Gap != "" {
				return Choice{}, reach(w, a)
			}
			return Choice{}, fmt.Sprintf("the archive's WAL on this timeline ends at %s, written %s", w.End, w.Written.UTC().Format(time.RFC3339))
		}
	}
	c := Choice{Full: full, Timeline: tli, Segments: w.Segments, End: w.End}
	// Every history file goes along, not only those of the path: the
	// promoted server takes a timeline above all it sees, and so never
	// one the archive already holds a branch of.
	for h := range a.History {
		c.Histories = append(c.Histories, h)
	}
	slices.Sort(c.Histories)
	c.Settings = Settings(t, tli)
	return c, ""
}

func reach(w Walk, a *Archive) string {
	if w.Gap != "" {
		return fmt.Sprintf("the archive misses %s (a gap), so the WAL stops at %s", w.Gap, w.End)
	}
	return fmt.Sprintf("the archive's WAL ends at %s", w.End)
}

// Settings are the recovery settings for target t on timeline tli:
// inclusive, so that a time target keeps every transaction that committed
// at or before it (a commit's timestamp is taken before its WAL record is
// written, so a commit acknowledged before T has one before T) and stops
// at the first commit after it (a transaction that began after T commits
// after it); then promote.
func Settings(t Target, tli int) map[string]string {
	s := map[string]string{
		"restore_command":           "false", // the WAL is in pg_wal
		"recovery_target_action":    "promote",
		"recovery_target_inclusive": "on",
		"recovery_target_timeline":  strconv.Itoa(tli),
	}
	switch t.Kind() {
	case "time":
		s["recovery_target_time"] = t.Time.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
	case "lsn":
		s["recovery_target_lsn"] = t.LSN.String()
	case "name":
		s["recovery_target_name"] = t.Name
	}
	return s
}

// Windows are the recoverable windows, one per timeline the archive holds
// WAL of: from the end of the oldest full the archive continues without a
// gap, to the end of the WAL on that timeline.
func Windows(backups []state.Backup, a *Archive) []state.RecoveryWindow {
	fulls := usable(backups)
	slices.Reverse(fulls) // oldest first
	var out []state.RecoveryWindow
	for _, tli := range a.Timelines() {
		path := Path(a.History[tli], tli)
		for _, full := range fulls {
			stop, err := state.ParseLSN(full.StopLSN)
			if err != nil {
				continue
			}
			if on := tliAt(path, stop); full.Timeline != 0 && on != full.Timeline {
				continue
			}
			w := a.walk(path, stop, 0)
			if len(w.Segments) == 0 || w.End < path[len(path)-1].From {
				continue // the walk does not reach this timeline
			}
			win := state.RecoveryWindow{Timeline: tli, Backup: full.ID, FromLSN: full.StopLSN, From: full.Finished, ToLSN: w.End.String(), To: w.Written}
			if w.Gap != "" {
				win.Gap = w.Gap
			}
			out = append(out, win)
			break
		}
	}
	return out
}

// DescribeWindows says the windows in a line, for errors.
func DescribeWindows(ws []state.RecoveryWindow) string {
	if len(ws) == 0 {
		return "nothing (no full backup the archive continues from)"
	}
	var parts []string
	for _, w := range ws {
		parts = append(parts, w.String())
	}
	return strings.Join(parts, "; ")
}

// Latest plans the replay of the archive after a restored chain, to the
// latest point it holds (a restore drill): from full's end along the
// highest timeline whose history passes there, to the end of the WAL
// without a gap. Recovery replays all of it, then promotes.
func Latest(full state.Backup, a *Archive) (Choice, error) {
	stop, err := state.ParseLSN(full.StopLSN)
	if err != nil {
		return Choice{}, fmt.Errorf("backup %s: %w", full.ID, err)
	}
	var why []string
	for _, tli := range a.Timelines() {
		path := Path(a.History[tli], tli)
		if on := tliAt(path, stop); full.Timeline != 0 && on != full.Timeline {
			continue
		}
		w := a.walk(path, stop, 0)
		if len(w.Segments) == 0 {
			why = append(why, fmt.Sprintf("timeline %d: the archive does not hold %s, where %s ends", tli,
				walarchive.SegmentName(tliAt(path, stop), uint64(stop), a.segSize()), full.ID))
			continue
		}
		if w.Gap != "" {
			return Choice{}, fmt.Errorf("the archive misses %s after %s (a gap): the WAL since %s cannot be replayed past it", w.Gap, w.End, full.ID)
		}
		c := Choice{Full: full, Timeline: tli, Segments: w.Segments, End: w.End,
			Settings: map[string]string{"restore_command": "false", "recovery_target_timeline": strconv.Itoa(tli)}}
		for h := range a.History {
			c.Histories = append(c.Histories, h)
		}
		slices.Sort(c.Histories)
		return c, nil
	}
	if len(why) == 0 {
		return Choice{}, fmt.Errorf("the WAL archive holds no WAL on the timeline of %s", full.ID)
	}
	return Choice{}, errors.New(strings.Join(why, "; "))
}
