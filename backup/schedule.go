package backup

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/pgha/pgha/state"
)

// Schedule is the cron expression per backup type.
type Schedule struct {
	Full, Incremental, Differential string
}

// Due is a backup the schedule asks for now.
type Due struct {
	Type   string    // full | differential | incremental
	Since  time.Time // the schedule tick it is due since
	Parent string    // the backup it builds on ("" for a full)
	Reason string
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// lastTick is the newest time at or before now that spec fires.
func lastTick(spec string, now time.Time) (time.Time, bool, error) {
	if spec == "" {
		return time.Time{}, false, nil
	}
	s, err := parser.Parse(spec)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("schedule %q: %w", spec, err)
	}
	var last time.Time
	found := false
	for t := now.Add(-32 * 24 * time.Hour); ; {
		n := s.Next(t)
		if n.IsZero() || n.After(now) {
			return last, found, nil
		}
		last, found, t = n, true, n
	}
}

// NextDue decides, purely, which one backup is due at now given the
// complete backups taken so far (any order) and the cluster's current
// timeline. A missed night yields one backup (the latest tick's), not one
// per missed tick; a full is due when there is none, or when the newest
// full is from an older timeline (after a failover, incremental chains
// restart from a new full). Stronger types satisfy weaker ones: a full
// taken after an incremental tick covers it.
func NextDue(sch Schedule, backups []state.Backup, timeline int, now time.Time) (*Due, error) {
	var lastFull, lastFullOrDiff, lastAny *state.Backup
	for i := range backups {
		b := &backups[i]
		if b.Status != "complete" {
			continue
		}
		if b.Type == "full" && (lastFull == nil || b.Started.After(lastFull.Started)) {
			lastFull = b
		}
		if (b.Type == "full" || b.Type == "differential") && (lastFullOrDiff == nil || b.Started.After(lastFullOrDiff.Started)) {
			lastFullOrDiff = b
		}
		if lastAny == nil || b.Started.After(lastAny.Started) {
			lastAny = b
		}
	}
	if lastFull == nil {
		return &Due{Type: "full", Since: now, Reason: "no full backup exists"}, nil
	}
	if timeline > 0 && lastFull.Timeline > 0 && lastFull.Timeline != timeline {
		return &Due{Type: "full", Since: now, Reason: fmt.Sprintf("the newest full is from timeline %d, the cluster is on %d (a failover happened)", lastFull.Timeline, timeline)}, nil
	}
	type rule struct {
		typ, spec string
		covered   *state.Backup
		parent    *state.Backup
	}
	for _, r := range []rule{
		{"full", sch.Full, lastFull, nil},
		{"differential", sch.Differential, lastFullOrDiff, lastFull},
		{"incremental", sch.Incremental, lastAny, lastAny},
	} {
		tick, ok, err := lastTick(r.spec, now)
		if err != nil {
			return nil, err
		}
		if !ok || !r.covered.Started.Before(tick) {
			continue
		}
		d := &Due{Type: r.typ, Since: tick, Reason: fmt.Sprintf("due since %s", tick.Format("Mon 2006-01-02 15:04"))}
		if r.parent != nil {
			d.Parent = r.parent.ID
			d.Reason += fmt.Sprintf(", parent %s %s", r.parent.Type, r.parent.ID)
		}
		return d, nil
	}
	return nil, nil
}

// WALSlot says whether incrementals on a server of this version
// (server_version_num) store WAL and so need the backup slot: before
// PostgreSQL 17. On 17 they are block-level and nothing holds WAL back.
func WALSlot(serverVersion int) bool { return serverVersion < 170000 }
