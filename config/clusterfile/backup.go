package clusterfile

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/pgha/pgha/config"
)

var (
	backupSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "repository"}, {Name: "compression"}, {Name: "level"}, {Name: "method"}, {Name: "source"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "schedule"}, {Type: "retention"}},
	}
	scheduleSchema  = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "full"}, {Name: "incremental"}, {Name: "differential"}}}
	retentionSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "days"}, {Name: "fulls"}}}
)

func (d *decoder) backup(b *hcl.Block) *config.Backup {
	bk := &config.Backup{Repository: d.path("./backups"), Compression: "gzip", Method: "physical", Source: "primary",
		Schedule: config.DefaultSchedule, Retention: config.Retention{Days: 6}, DeclRange: b.DefRange}
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
				if _, err := config.CronParser.Parse(v); err != nil {
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
