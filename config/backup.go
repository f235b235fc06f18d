package config

import (
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/robfig/cron/v3"
)

// Backup is the backup policy: where backups go, how they are compressed,
// when each type is due and how long they are kept.
type Backup struct {
	Repository string // absolute directory (default <Dir>/backups), or s3://bucket/prefix
	// S3 says how to reach an s3:// repository (nil for a directory).
	S3          *S3    `json:",omitempty"`
	Compression string // gzip (default) | zstd | none
	Level       int    // compressor level; 0 = the compressor's default
	Method      string // physical (default) | logical (pg_dumpall for fulls)
	Source      string // primary (default) | standby
	Schedule    Schedule
	// Retention keeps backups younger than Days, and at least Fulls full
	// chains; the newest restorable chain is never expired.
	Retention Retention
	// Archive turns on the continuous WAL archive (nil: off).
	Archive *Archive

	DeclRange hcl.Range `json:"-"`
}

// S3 is how pgha reaches an S3-compatible repository. The keys are
// secrets: plans, JSON and errors show "(sensitive)".
type S3 struct {
	Endpoint  string // http(s)://host[:port]; "" = AWS
	Region    string // default us-east-1
	AccessKey Secret
	SecretKey Secret
	CAFile    string // absolute; "" = the system's CAs
	PartSize  int64  // multipart part size in bytes; 0 = the store's default (16 MiB)

	DeclRange hcl.Range `json:"-"`
}

// IsS3 reports whether the repository is an S3 location.
func (b *Backup) IsS3() bool { return b != nil && strings.HasPrefix(b.Repository, "s3://") }

// Schedule holds one standard 5-field cron expression per backup type,
// and one for restore drills ("" = none).
type Schedule struct {
	Full, Incremental, Differential string
	Drill                           string
}

// Retention says how long backups are kept.
type Retention struct {
	Days  int // default 6
	Fulls int // 0 = no count rule
}

// Archive is the continuous WAL archive: `pgha watch` (or `pgha archive`)
// streams the primary's WAL into the repository through ArchiveSlot.
type Archive struct {
	// Flush is how often the segment being written is stored (default
	// 200ms, at most 1s): the bound on what the archive lags the primary.
	Flush time.Duration
}

// DefaultArchiveFlush is the archive's default flush interval: well
// under the one second the archive promises, so that a store taking a
// few hundred milliseconds under load still keeps it.
const DefaultArchiveFlush = 200 * time.Millisecond

// ArchiveSlot is the physical slot on the primary the WAL archive streams
// through. It is not the backup slot: a physical slot takes one streamer
// at a time, and the archive streams all the time while an incremental
// backup streams through BackupSlot when it runs.
const ArchiveSlot = "pgha_archive"

// BackupSlot is the physical slot on the primary that holds the WAL since
// the newest backup, which the next incremental or differential stores.
const BackupSlot = "pgha_backup"

// DefaultSchedule is the classic week the hand-made scripts ran: full on
// Monday, incremental Tuesday/Thursday/Saturday, differential
// Wednesday/Friday, all at 02:00.
var DefaultSchedule = Schedule{Full: "0 2 * * 1", Incremental: "0 2 * * 2,4,6", Differential: "0 2 * * 3,5"}

// CronParser is the parser for schedule expressions (minute hour dom month dow).
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
