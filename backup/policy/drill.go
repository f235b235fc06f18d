package policy

import (
	"fmt"
	"time"

	"github.com/pgha/pgha/state"
)

// LastDrill is the backup whose record carries the newest restore drill
// (a verify of mode drill), nil when none ran. Only the catalog's records
// carry verifies.
func LastDrill(backups []state.Backup) *state.Backup {
	var last *state.Backup
	for i := range backups {
		b := &backups[i]
		if b.VerifyMode == state.VerifyDrill && !b.VerifiedAt.IsZero() && (last == nil || b.VerifiedAt.After(last.VerifiedAt)) {
			last = b
		}
	}
	return last
}

// DrillDue says whether the drill schedule spec asks for a drill at now
// given when the last one ran (zero: never): its latest tick came after
// it. since is that tick.
func DrillDue(spec string, last, now time.Time) (since time.Time, due bool, err error) {
	tick, ok, err := lastTick(spec, now)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	if !last.IsZero() && !last.Before(tick) {
		return tick, false, nil
	}
	return tick, true, nil
}

// DrillReason says why a drill is due, for the plan.
func DrillReason(since time.Time, last *state.Backup) string {
	r := fmt.Sprintf("due since %s", since.Format("Mon 2006-01-02 15:04"))
	if last == nil {
		return r + ", no restore drill has run"
	}
	return r + fmt.Sprintf(", the last ran %s", last.VerifiedAt.UTC().Format("Mon 2006-01-02 15:04"))
}
