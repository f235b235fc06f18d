package policy

import (
	"fmt"
	"sort"
	"time"

	"github.com/pgha/pgha/state"
)

// Retention says how long backups are kept: chains with a backup younger
// than Days, and the newest Fulls chains. Zero turns a rule off; with both
// off nothing expires.
type Retention struct {
	Days, Fulls int
}

// ExpiredChain is a full and every backup that needs it, which retention
// lets go together: a dependent never outlives what it restores from.
type ExpiredChain struct {
	Full    state.Backup
	Members []state.Backup // the full first, then its dependents by time
	Reason  string
}

// Expired decides, purely, which chains retention expires at now, oldest
// first. A chain is kept while any backup in it is young enough, or while
// it is among the newest Fulls; the newest chain that restores is never
// expired, whatever the rules say.
func Expired(all []state.Backup, r Retention, now time.Time) []ExpiredChain {
	if r.Days <= 0 && r.Fulls <= 0 {
		return nil
	}
	chains := map[string][]state.Backup{}
	var fulls []state.Backup
	for _, b := range all {
		if b.Status != "complete" {
			continue
		}
		if b.Type == "full" {
			fulls = append(fulls, b)
		}
	}
	for _, f := range fulls {
		chains[f.ID] = []state.Backup{f}
	}
	for _, b := range all {
		// Each backup records the full its chain starts from.
		if _, ok := chains[b.Root]; ok && b.Status == "complete" && b.Type != "full" {
			chains[b.Root] = append(chains[b.Root], b)
		}
	}
	sort.Slice(fulls, func(i, j int) bool { return fulls[i].Started.After(fulls[j].Started) })
	var out []ExpiredChain
	for i, f := range fulls {
		if i == 0 {
			continue // the newest restorable chain stays
		}
		members := chains[f.ID]
		sort.SliceStable(members[1:], func(a, b int) bool { return members[1+a].Started.Before(members[1+b].Started) })
		newest := members[0].Started
		for _, m := range members {
			if m.Started.After(newest) {
				newest = m.Started
			}
		}
		keepByCount := r.Fulls > 0 && i < r.Fulls
		keepByAge := r.Days > 0 && now.Sub(newest) < time.Duration(r.Days)*24*time.Hour
		if keepByCount || keepByAge {
			continue
		}
		var why string
		switch {
		case r.Days > 0 && r.Fulls > 0:
			why = fmt.Sprintf("retention %d days and %d fulls: its newest backup is from %s and %d newer fulls exist", r.Days, r.Fulls, newest.Format("2006-01-02"), i)
		case r.Days > 0:
			why = fmt.Sprintf("retention %d days: its newest backup is from %s", r.Days, newest.Format("2006-01-02 15:04"))
		default:
			why = fmt.Sprintf("retention %d fulls: %d newer fulls exist", r.Fulls, i)
		}
		if n := len(members) - 1; n > 0 {
			why += fmt.Sprintf("; its %d dependent backup(s) go with it", n)
		}
		out = append(out, ExpiredChain{Full: f, Members: members, Reason: why})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Full.Started.Before(out[j].Full.Started) })
	return out
}

// WALKeepFrom is where the WAL archive must keep WAL from: the start of
// the oldest complete physical full not in gone (the backups expired or
// being expired). A restore starts from a full and replays the archive
// from its start on, so the WAL before it is of no use to a chain kept.
// The full is nil when no such full exists: then no WAL may go.
func WALKeepFrom(all []state.Backup, gone map[string]bool) (state.LSN, *state.Backup) {
	var from state.LSN
	var oldest *state.Backup
	for i := range all {
		b := &all[i]
		if b.Type != "full" || b.Status != "complete" || b.Format == FormatLogical || gone[b.ID] {
			continue
		}
		l, err := state.ParseLSN(b.StartLSN)
		if err != nil || l == 0 {
			continue
		}
		if oldest == nil || l < from {
			from, oldest = l, b
		}
	}
	return from, oldest
}
