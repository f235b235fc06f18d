package clusterfile

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/pgha/pgha/config"
)

var (
	backupSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "repository"}, {Name: "compression"}, {Name: "level"}, {Name: "method"}, {Name: "source"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "schedule"}, {Type: "retention"}, {Type: "archive"}, {Type: "s3"}},
	}
	s3Schema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "endpoint"}, {Name: "region"},
		{Name: "access_key"}, {Name: "secret_key"}, {Name: "ca_file"}, {Name: "part_size"}}}
	scheduleSchema  = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "full"}, {Name: "incremental"}, {Name: "differential"}, {Name: "drill"}}}
	retentionSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "days"}, {Name: "fulls"}}}
	archiveSchema   = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "flush"}}}
)

func (d *decoder) backup(b *hcl.Block) *config.Backup {
	bk := &config.Backup{Repository: d.path("./backups"), Compression: "gzip", Method: "physical", Source: "primary",
		Schedule: config.DefaultSchedule, Retention: config.Retention{Days: 6}, DeclRange: b.DefRange}
	content, diags := b.Body.Content(backupSchema)
	d.diags = append(d.diags, diags...)
	var repoRange hcl.Range
	for _, as := range backupSchema.Attributes {
		a := content.Attributes[as.Name]
		if a == nil {
			continue
		}
		switch as.Name {
		case "repository":
			var v string
			if !d.str(a, &v) {
				break
			}
			if !strings.HasPrefix(v, "s3://") {
				bk.Repository = d.path(v)
				break
			}
			bk.Repository = v
			if msg := s3Location(v); msg != "" {
				d.errorAt(a.Expr.Range(), "Invalid repository", fmt.Sprintf("repository = %s: %s", d.show(&v, v), msg))
				break
			}
			repoRange = a.Expr.Range()
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
				case "drill":
					bk.Schedule.Drill = v
				}
			})
		case "archive":
			bk.Archive = &config.Archive{Flush: config.DefaultArchiveFlush}
			d.attrs(blk.Body, archiveSchema, func(name string, a *hcl.Attribute) {
				var str string
				if !d.str(a, &str) {
					return
				}
				v, err := time.ParseDuration(str)
				if err != nil {
					d.errorAt(a.Expr.Range(), "Invalid duration",
						fmt.Sprintf("flush = %s is not a duration; write for example \"200ms\" or \"1s\".", d.show(&str, str)))
					return
				}
				if v < 10*time.Millisecond || v > time.Second {
					d.errorAt(a.Expr.Range(), "Invalid archive flush", "flush is from 10ms to 1s: the archive stores the segment being written at least every second.")
					return
				}
				bk.Archive.Flush = v
			})
		case "s3":
			bk.S3 = d.s3(blk)
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
	switch {
	case bk.IsS3() && bk.S3 == nil:
		d.errorAt(repoRange, "Missing s3 block",
			"The repository is in S3: say how to reach it in the backup block:\n  s3 {\n    endpoint   = \"https://s3.example.com\"\n    access_key = env(\"PGHA_S3_ACCESS_KEY\")\n    secret_key = file(\"./.secrets/s3\")\n  }")
	case !bk.IsS3() && bk.S3 != nil:
		d.errorAt(bk.S3.DeclRange, "Unused s3 block",
			"The s3 block is for a repository in S3 (repository = \"s3://BUCKET/PREFIX\"); this backup block's repository is a directory.")
	}
	return bk
}

// s3Location says what is wrong with an s3:// repository, or "".
func s3Location(v string) string {
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(v, "s3://"), "/")
	switch {
	case bucket == "":
		return "it names no bucket; write s3://BUCKET/PREFIX."
	case !bucketRe.MatchString(bucket):
		return "the bucket name is 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
	}
	if p := strings.Trim(prefix, "/"); p != "" && path.Clean("/" + p)[1:] != p {
		return "the prefix after the bucket is a clean path (no \"..\", \".\" or \"//\")."
	}
	return ""
}

var bucketRe = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// s3 decodes s3 { endpoint, region, access_key, secret_key, ca_file,
// part_size }. Both keys are required: pgha reads no credentials from
// anywhere the file does not name.
func (d *decoder) s3(b *hcl.Block) *config.S3 {
	s := &config.S3{Region: "us-east-1", DeclRange: b.DefRange}
	seen := map[string]bool{}
	d.attrs(b.Body, s3Schema, func(name string, a *hcl.Attribute) {
		seen[name] = true
		switch name {
		case "endpoint":
			if !d.str(a, &s.Endpoint) {
				return
			}
			u, err := url.Parse(s.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.User != nil {
				d.errorAt(a.Expr.Range(), "Invalid s3 endpoint",
					fmt.Sprintf("endpoint = %s is not http(s)://host[:port]; write for example \"https://s3.example.com\" or \"http://127.0.0.1:7070\" (leave it out for AWS).", d.show(&s.Endpoint, s.Endpoint)))
				s.Endpoint = ""
			}
		case "region":
			if d.str(a, &s.Region) && s.Region == "" {
				d.errorAt(a.Expr.Range(), "Empty s3 region", "region names the bucket's region (S3 signs requests with it); leave it out for us-east-1.")
			}
		case "access_key", "secret_key":
			v, ok := d.secret(a)
			if !ok {
				return
			}
			if !v.IsSet() {
				d.errorAt(a.Expr.Range(), "Empty s3 "+name, name+" is empty; give it with env(\"...\") or file(\"...\").")
				return
			}
			if name == "access_key" {
				s.AccessKey = v
			} else {
				s.SecretKey = v
			}
		case "ca_file":
			d.filePath(a, &s.CAFile)
		case "part_size":
			var str string
			if !d.str(a, &str) {
				return
			}
			v, err := config.ParseSize(str)
			switch {
			case err != nil:
				d.errorAt(a.Expr.Range(), "Invalid size", fmt.Sprintf("part_size = %s is not a size; write a number with a unit, e.g. \"16MB\".", d.show(&str, str)))
			case v < 5<<20 || v > 5<<30:
				d.errorAt(a.Expr.Range(), "Invalid part_size", "part_size is from 5MB to 5GB (S3's limits for a multipart upload's parts); 10,000 parts make the largest object.")
			default:
				s.PartSize = v
			}
		}
	})
	// A key given but failed (env() of an unset variable) has said so.
	if !seen["access_key"] && !seen["secret_key"] {
		d.errorAt(b.DefRange, "Missing s3 credentials",
			"pgha signs its requests with an access key and its secret. Add to the s3 block:\n  access_key = env(\"PGHA_S3_ACCESS_KEY\")\n  secret_key = file(\"./.secrets/s3\")")
	} else if seen["access_key"] != seen["secret_key"] {
		missing := "secret_key"
		if !seen["access_key"] {
			missing = "access_key"
		}
		d.errorAt(b.DefRange, "Missing s3 "+missing, "access_key and secret_key go together: add "+missing+" to the s3 block.")
	}
	return s
}
