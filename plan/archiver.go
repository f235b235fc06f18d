package plan

import (
	"fmt"
	"time"
)

// archivers warns about every node whose WAL archiver fails: a primary
// (or a standby with archive_mode = always) whose archive_command failed
// after its last success. pgha's backups carry the WAL they need and do
// not wait for the archiver (BASE_BACKUP's WAIT false), so nothing pgha
// does stalls on it; but PostgreSQL keeps each WAL file until it is
// archived, so pg_wal grows until the disk is full, and whatever reads
// the archive (a standby's restore_command, another tool's
// point-in-time recovery) misses the WAL from the failing file on. A
// person has to fix archive_command, which pgha does not manage; the
// command itself is not shown, as it may carry credentials.
//
// Not a fact of the plan's fingerprint: the counters move all the time.
func (b *builder) archivers() {
	for _, cn := range b.c.Nodes {
		n := b.s.Node(cn.Name)
		if n == nil || !n.Reachable || !n.Archiver.Failing() {
			continue
		}
		a := n.Archiver
		if n.InRecovery && a.Mode != "always" {
			continue // a standby's archiver runs only with always; older figures are its past as a primary
		}
		summary := fmt.Sprintf("WAL archiving fails on %s: %s is not archived", n.Name, a.LastFailedWAL)
		var since string
		if a.ArchivedCount > 0 && !a.LastArchivedTime.IsZero() {
			summary += ", nothing archived since " + stamp(a.LastArchivedTime)
			since = fmt.Sprintf("pg_stat_archiver on %s: the last file archived was %s, %s before this observation; archive_command failed after it, the last time at %s (%d failures since the statistics were reset).",
				n.Name, a.LastArchivedWAL, age(b.s.ObservedAt, a.LastArchivedTime), stamp(a.LastFailedTime), a.FailedCount)
		} else {
			summary += ", nothing archived yet"
			since = fmt.Sprintf("pg_stat_archiver on %s: %d failures and no file archived since its statistics were reset, the last failure at %s.",
				n.Name, a.FailedCount, stamp(a.LastFailedTime))
		}
		b.diag(Warning, n.Name, summary, since+
			" pgha's backups do not wait for the archiver (they carry the WAL they need), but PostgreSQL keeps every WAL file from "+
			a.LastFailedWAL+" on in pg_wal until archive_command succeeds: pg_wal grows until the disk is full. "+
			"The server log says why archive_command fails; fix it, or set archive_mode = off if nothing reads the archive.")
	}
}

// age is how long before now t was, to the second; "0s" when t is not
// before now (clocks of two hosts).
func age(now, t time.Time) time.Duration {
	if !t.Before(now) {
		return 0
	}
	return now.Sub(t).Round(time.Second)
}
