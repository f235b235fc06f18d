package plan

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// ArchiveView is what the plan says of the continuous WAL archive: where
// it is durable and how far behind the primary, from the receiver's
// status object. Not a fact of the fingerprint: it moves every flush.
type ArchiveView struct {
	Node     string `json:"node,omitempty"`
	Timeline int    `json:"timeline"`
	Flushed  string `json:"flushed_lsn"`
	// LagBytes is the primary's current LSN minus the durable position
	// (on the same timeline; -1 when the archive is on an older one).
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is how long ago the durable position moved, when the
	// primary is past it; 0 when the archive holds all the primary wrote.
	LagSeconds float64   `json:"lag_seconds"`
	FlushedAt  time.Time `json:"flushed_at"`
	Segments   int       `json:"segments"`
	Oldest     string    `json:"oldest,omitempty"`
}

// String is the plan's line about the archive.
func (v ArchiveView) String() string {
	var lag string
	switch {
	case v.LagBytes < 0:
		lag = "on an older timeline than the primary"
	case v.LagBytes == 0:
		lag = "holding all the primary wrote"
	default:
		lag = fmt.Sprintf("%s (%.1f s) behind the primary", bytesize.Format(v.LagBytes), v.LagSeconds)
	}
	s := fmt.Sprintf("WAL archive: durable up to %s on timeline %d", v.Flushed, v.Timeline)
	if v.Node != "" {
		s += " from " + v.Node
	}
	s += ", " + lag
	if v.Oldest != "" {
		s += fmt.Sprintf("; %d segments since %s", v.Segments, v.Oldest)
	}
	return s + "."
}

// Bounds past which the plan warns about the archive: a receiver that has
// not written its status for archiveStale is not running; a primary
// archiveLagWarn past the durable position is not being archived.
const (
	archiveStale   = 30 * time.Second
	archiveLagWarn = 10 * time.Second
)

// walArchive shows the continuous archive's position and lag, warns when
// no receiver runs, and finds gaps: a segment missing between the start
// of the oldest kept full (or the archive's first segment, when it began
// later) and the archive's end is critical, since no point-in-time
// restore crosses it.
func (b *builder) walArchive(primary *state.Node, running bool) {
	bk := b.c.Backup
	a := b.s.Archive
	if bk.Archive == nil && a == nil {
		return
	}
	if a != nil && a.Error != "" {
		b.diag(Warning, "", "the WAL archive cannot be read: "+a.Error, "Check the repository's permissions and the disk.")
	}
	if a == nil || a.Status == nil {
		if bk.Archive != nil {
			b.diag(Warning, "", "the WAL archive declared in the backup block has not stored anything yet",
				"`pgha watch` runs the archive receiver; without a watcher, run `pgha archive` (as a service). Until then no point-in-time restore is possible.")
		}
		return
	}
	st := a.Status
	if running && st.SystemID != "" && primary.SystemID != "" && st.SystemID != primary.SystemID {
		// A cluster made anew under the same name: nothing of that
		// archive belongs to this one, and the receiver refuses it.
		b.diag(Warning, "", fmt.Sprintf("the WAL archive in %s is of database system %s, the primary %s is system %s", bk.Repository, st.SystemID, b.target, primary.SystemID),
			fmt.Sprintf("The receiver does not archive this cluster until that archive is moved aside (%s/wal): it was made by a cluster of the same name before this one was created.", b.c.Name))
		return
	}
	segSize := uint64(st.SegmentSize)
	if segSize == 0 {
		segSize = 16 << 20
	}
	v := &ArchiveView{Node: st.Node, Timeline: st.Timeline, Flushed: st.Flushed.String(), FlushedAt: st.FlushedAt, Segments: a.Segments}
	if len(a.Runs) > 0 {
		v.Oldest = a.Runs[0].First
		for _, r := range a.Runs {
			if r.First[8:] < v.Oldest[8:] { // by position, whatever the timeline
				v.Oldest = r.First
			}
		}
	}
	now := b.s.ObservedAt
	behind := func() float64 { return max(0, now.Sub(st.FlushedAt).Round(100*time.Millisecond).Seconds()) }
	if running {
		switch {
		case primary.Timeline > st.Timeline:
			v.LagBytes = -1
			v.LagSeconds = behind()
		case primary.CurrentLSN > st.Flushed:
			v.LagBytes = int64(primary.CurrentLSN - st.Flushed)
			v.LagSeconds = behind()
		}
	}
	b.p.Archive = v
	if bk.Archive != nil && age(now, st.WrittenAt) > archiveStale {
		b.diag(Warning, "", fmt.Sprintf("no WAL archive receiver has written since %s (%s ago)", stamp(st.WrittenAt), age(now, st.WrittenAt)),
			"`pgha watch` runs the receiver (it rewrites its status every few seconds even when idle); without a watcher, run `pgha archive`. "+
				fmt.Sprintf("Slot pgha_archive on the primary keeps the WAL since %s meanwhile, and pg_wal grows.", st.Flushed))
	} else if running && v.LagBytes != 0 && v.LagSeconds > archiveLagWarn.Seconds() {
		b.diag(Warning, "", fmt.Sprintf("the WAL archive is %.0f s behind the primary", v.LagSeconds), v.String()+
			" The receiver's log says why it does not keep up (a slow repository, a lost connection).")
	}
	b.archiveGap(a, segSize)
}

// archiveGap reports the segments missing along the archive's timeline
// history from where the oldest kept full starts to the archive's end.
func (b *builder) archiveGap(a *state.Archive, segSize uint64) {
	st := a.Status
	from, full := oldestKeptStart(b.s.Backups, policy.Retention{Days: b.c.Backup.Retention.Days, Fulls: b.c.Backup.Retention.Fulls}, b.s.ObservedAt)
	if full == nil {
		return
	}
	path := walarchive.Path(a.History, st.Timeline)
	if a.HistoryTimeline != st.Timeline {
		path = walarchive.Path(nil, st.Timeline)
	}
	first := archiveStart(a, segSize)
	start := uint64(from)
	if first > start {
		b.diag(Warning, "", fmt.Sprintf("the WAL archive begins at %s, after the start of full backup %s (%s)", state.LSN(first), full.ID, from),
			"No point-in-time restore reaches back to that chain: the archive was turned on later, or its first segments were removed. "+
				"The first full taken while the archive runs is the oldest point-in-time restore can start from.")
		start = first
	}
	missing := walarchive.Missing(a.Runs, a.Partials, path, start, uint64(st.Flushed), segSize, 6)
	if len(missing) == 0 {
		return
	}
	list := strings.Join(missing, ", ")
	if len(missing) == 6 {
		list = strings.Join(missing[:5], ", ") + " and more"
	}
	b.diag(Critical, "", fmt.Sprintf("the WAL archive has a gap: %s missing", list),
		fmt.Sprintf("Recovery reads every segment from the start of a full to its target: no point-in-time restore crosses the gap (archive from %s to %s on timeline %d). "+
			"A segment is missing when the receiver could not stream it (the primary no longer held it) or when it was removed by hand; "+
			"a full backup taken now starts a chain the archive continues from.", state.LSN(start), st.Flushed, st.Timeline))
}

// archiveStart is the first LSN the archive holds WAL of (the start of its
// oldest segment, complete or partial); max when it holds none.
func archiveStart(a *state.Archive, segSize uint64) uint64 {
	first := ^uint64(0)
	names := append([]string{}, a.Partials...)
	for _, r := range a.Runs {
		names = append(names, r.First)
	}
	for _, n := range names {
		if s, err := walarchive.SegmentStart(n, segSize); err == nil && s < first {
			first = s
		}
	}
	return first
}

// oldestKeptStart is where the oldest physical full that retention keeps
// starts: the archive keeps the WAL from there on. nil when no such full
// exists.
func oldestKeptStart(all []state.Backup, r policy.Retention, now time.Time) (state.LSN, *state.Backup) {
	expired := map[string]bool{}
	for _, ch := range policy.Expired(all, r, now) {
		for _, m := range ch.Members {
			expired[m.ID] = true
		}
	}
	return policy.WALKeepFrom(all, expired)
}

// archiveExpiry says which of the archive's WAL goes with the chains
// retention expires: the segments that end at or before the start of the
// oldest full kept. "" when none (no archive, nothing expires, no full is
// kept, or nothing is that old).
func (b *builder) archiveExpiry(expired []policy.ExpiredChain) (before, note string) {
	a := b.s.Archive
	if a == nil || len(expired) == 0 {
		return "", ""
	}
	if p := b.node(b.target); a.Status != nil && a.Status.SystemID != "" && p.SystemID != "" && a.Status.SystemID != p.SystemID {
		return "", "" // another system's archive: not this retention's to cut
	}
	gone := map[string]bool{}
	for _, ch := range expired {
		for _, m := range ch.Members {
			gone[m.ID] = true
		}
	}
	from, full := policy.WALKeepFrom(b.s.Backups, gone)
	if full == nil {
		return "", ""
	}
	segSize := uint64(16 << 20)
	if a.Status != nil && a.Status.SegmentSize > 0 {
		segSize = uint64(a.Status.SegmentSize)
	}
	n := walarchive.CountBefore(a.Runs, a.Partials, uint64(from), segSize)
	if n == 0 {
		return "", ""
	}
	return from.String(), fmt.Sprintf("%d archived WAL segment(s) ending at or before %s, where full %s, the oldest kept, starts", n, from, full.ID)
}
