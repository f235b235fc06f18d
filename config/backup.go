package config

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/robfig/cron/v3"
)

// Backup is the backup policy: where backups go, how they are compressed,
// when each type is due and how long they are kept.
type Backup struct {
	Repository  string // absolute directory; default <Dir>/backups
	Compression string // gzip (default) | zstd | none
	Level       int    // compressor level; 0 = the compressor's default
	Method      string // physical (default) | logical (pg_dumpall for fulls)
	Source      string // primary (default) | standby
	Schedule    Schedule
	// Retention keeps backups younger than Days, and at least Fulls full
	// chains; the newest restorable chain is never expired.
	Retention Retention

	DeclRange hcl.Range `json:"-"`
}

// Schedule holds one standard 5-field cron expression per backup type.
type Schedule struct {
	Full, Incremental, Differential string
}

// Retention says how long backups are kept.
type Retention struct {
	Days  int // default 6
	Fulls int // 0 = no count rule
}

// BackupSlot is the physical slot on the primary that holds the WAL since
// the newest backup, which the next incremental or differential stores.
const BackupSlot = "pgha_backup"

// DefaultSchedule is the classic week the hand-made scripts ran: full on
// Monday, incremental Tuesday/Thursday/Saturday, differential
// Wednesday/Friday, all at 02:00.
var DefaultSchedule = Schedule{Full: "0 2 * * 1", Incremental: "0 2 * * 2,4,6", Differential: "0 2 * * 3,5"}

// CronParser is the parser for schedule expressions (minute hour dom month dow).
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
