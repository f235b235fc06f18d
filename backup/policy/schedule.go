package policy

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/pgha/pgha/state"
)

// Schedule is the cron expression per backup type, and for restore
// drills (DrillDue).
type Schedule struct {
	Full, Incremental, Differential string
	Drill                           string
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
// complete backups taken so far (any order). A missed night yields one
// backup (the latest tick's), not one per missed tick; a full is due when
// there is none. Stronger types satisfy weaker ones: a full taken after an
// incremental tick covers it. Whether the newest chain can continue on the
// current primary (a switchover or a failover since) is ChainBreak's
// question, asked by the planner, which knows the primary.
func NextDue(sch Schedule, backups []state.Backup, now time.Time) (*Due, error) {
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

// Head is the backup the next incremental or differential continues from:
// the newest complete backup of the newest full's chain (nil when there
// is no full).
func Head(all []state.Backup) *state.Backup {
	var full, last *state.Backup
	for i := range all {
		if b := &all[i]; b.Status == "complete" && b.Type == "full" && (full == nil || b.Started.After(full.Started)) {
			full = b
		}
	}
	if full == nil {
		return nil
	}
	for i := range all {
		if b := &all[i]; b.Status == "complete" && (b.ID == full.ID || b.Root == full.ID) && (last == nil || b.Started.After(last.Started)) {
			last = b
		}
	}
	return last
}

// ChainBreak says why a chain whose newest backup is head cannot continue
// on a primary on timeline with history (its timeline history file), or
// "" when it can. A chain follows a switchover or a failover when head is
// on the primary's history: on its timeline, or on an ancestor the
// primary's timeline left after head's stop (the primary has replayed
// everything head holds, and the WAL since is one line of history).
func ChainBreak(head state.Backup, timeline int, history []state.TimelineSwitch) string {
	if head.Timeline == 0 || timeline == 0 || head.Timeline == timeline {
		return ""
	}
	stop, err := state.ParseLSN(head.StopLSN)
	if err != nil {
		return fmt.Sprintf("backup %s records no usable stop LSN (%v)", head.ID, err)
	}
	for _, h := range history {
		if h.Parent != head.Timeline {
			continue
		}
		if stop > h.SwitchLSN {
			return fmt.Sprintf("backup %s stops at %s on timeline %d, after %s where the primary's timeline %d left it (the primary never had all it holds)",
				head.ID, stop, head.Timeline, h.SwitchLSN, timeline)
		}
		return ""
	}
	return fmt.Sprintf("backup %s is on timeline %d, which is not in the history of the primary's timeline %d", head.ID, head.Timeline, timeline)
}
