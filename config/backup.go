package config

import (
	"fmt"

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

var (
	backupSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "repository"}, {Name: "compression"}, {Name: "level"}, {Name: "method"}, {Name: "source"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "schedule"}, {Type: "retention"}},
	}
	scheduleSchema  = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "full"}, {Name: "incremental"}, {Name: "differential"}}}
	retentionSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "days"}, {Name: "fulls"}}}
)

func (d *decoder) backup(b *hcl.Block) *Backup {
	bk := &Backup{Repository: d.path("./backups"), Compression: "gzip", Method: "physical", Source: "primary",
		Schedule: DefaultSchedule, Retention: Retention{Days: 6}, DeclRange: b.DefRange}
	content, diags := b.Body.Content(backupSchema)
	d.diags = append(d.diags, diags...)
	for _, as := range backupSchema.Attributes {
		a := content.Attributes[as.Name]
		if a == nil {
			continue
		}
		switch as.Name {
		case "repository":
			var v string
			if d.str(a, &v) {
				bk.Repository = d.path(v)
			}
		case "compression":
			if d.str(a, &bk.Compression) && bk.Compression != "gzip" && bk.Compression != "zstd" && bk.Compression != "none" {
				d.errorAt(a.Expr.Range(), "Invalid compression", `compression is "gzip", "zstd" or "none".`)
			}
		case "level":
			if d.integer(a, &bk.Level) && (bk.Level < 0 || bk.Level > 22) {
				d.errorAt(a.Expr.Range(), "Invalid level", "level is 0 (the default) to 9 for gzip, or to 22 for zstd.")
			}
		case "method":
			if d.str(a, &bk.Method) && bk.Method != "physical" && bk.Method != "logical" {
				d.errorAt(a.Expr.Range(), "Invalid method", `method is "physical" or "logical".`)
			}
		case "source":
			if d.str(a, &bk.Source) && bk.Source != "primary" && bk.Source != "standby" {
				d.errorAt(a.Expr.Range(), "Invalid source", `source is "primary" or "standby".`)
			}
		}
	}
	for _, blk := range content.Blocks {
		switch blk.Type {
		case "schedule":
			d.attrs(blk.Body, scheduleSchema, func(name string, a *hcl.Attribute) {
				var v string
				if !d.str(a, &v) {
					return
				}
				if _, err := CronParser.Parse(v); err != nil {
					d.errorAt(a.Expr.Range(), "Invalid schedule", fmt.Sprintf("%s is not a cron expression (minute hour day-of-month month day-of-week, e.g. \"0 2 * * 1\"): %v.", name, err))
					return
				}
				switch name {
				case "full":
					bk.Schedule.Full = v
				case "incremental":
					bk.Schedule.Incremental = v
				case "differential":
					bk.Schedule.Differential = v
				}
			})
		case "retention":
			// A count of fulls alone replaces the default age rule.
			if attrs, _ := blk.Body.JustAttributes(); attrs["fulls"] != nil && attrs["days"] == nil {
				bk.Retention.Days = 0
			}
			d.attrs(blk.Body, retentionSchema, func(name string, a *hcl.Attribute) {
				var n int
				if !d.integer(a, &n) {
					return
				}
				if n < 0 {
					d.errorAt(a.Expr.Range(), "Invalid retention", name+" cannot be negative.")
					return
				}
				if name == "days" {
					bk.Retention.Days = n
				} else {
					bk.Retention.Fulls = n
				}
			})
		}
	}
	return bk
}
