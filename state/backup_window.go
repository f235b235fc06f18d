package state

import (
	"fmt"
	"time"
)

// RecoveryWindow is what a point-in-time restore can reach on one
// timeline: from the end of the oldest kept full the WAL archive
// continues from, to the end of the archived WAL. `pgha backup list`
// shows it.
type RecoveryWindow struct {
	Timeline int       `json:"timeline"`
	Backup   string    `json:"backup"`        // the oldest full it starts from
	FromLSN  string    `json:"from_lsn"`      // that full's end
	From     time.Time `json:"from"`          // when that full finished
	ToLSN    string    `json:"to_lsn"`        // where the archived WAL ends
	To       time.Time `json:"to,omitzero"`   // when that WAL was stored (zero: unknown)
	Gap      string    `json:"gap,omitempty"` // the missing segment after ToLSN, when WAL follows it
}

func (w RecoveryWindow) String() string {
	to := w.ToLSN
	if !w.To.IsZero() {
		to += " (" + w.To.UTC().Format("2006-01-02 15:04:05Z") + ")"
	}
	s := fmt.Sprintf("timeline %d from %s (%s, end of %s) to %s", w.Timeline, w.FromLSN, w.From.UTC().Format("2006-01-02 15:04:05Z"), w.Backup, to)
	if w.Gap != "" {
		s += ", then a gap: " + w.Gap + " is missing"
	}
	return s
}
