package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Result is what loading a cluster file gives: the cluster when it is
// valid, the diagnostics, and the parsed files so that diagnostics can be
// printed with their source lines.
type Result struct {
	Cluster *Cluster // nil when Diags has errors
	Diags   hcl.Diagnostics
	Files   map[string]*hcl.File
}

// Load reads and decodes a cluster file.
func Load(path string) *Result {
	src, err := os.ReadFile(path)
	if err != nil {
		detail := "Check the path, or pass the cluster file with -f FILE."
		return &Result{Files: map[string]*hcl.File{}, Diags: hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Cannot read the cluster file",
			Detail: fmt.Sprintf("%v. %s", err, detail)}}}
	}
	return Parse(src, path)
}

// Parse decodes cluster file source. filename is used in diagnostics as
// given and, made absolute, to resolve relative paths in the file.
func Parse(src []byte, filename string) *Result {
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, filename)
	r := &Result{Files: p.Files(), Diags: diags}
	if diags.HasErrors() {
		return r
	}
	abs, err := filepath.Abs(filename)
	if err != nil {
		abs = filename
	}
	d := &decoder{dir: filepath.Dir(abs), failed: map[string]bool{}}
	d.ctx = &hcl.EvalContext{Functions: functions(d.dir)}
	c := d.file(f.Body)
	r.Diags = append(r.Diags, d.diags...)
	if c == nil || r.Diags.HasErrors() {
		return r
	}
	sum := sha256.Sum256(src)
	c.File, c.Dir, c.Hash = abs, d.dir, "sha256:"+hex.EncodeToString(sum[:])
	r.Diags = append(r.Diags, validate(c)...)
	if !r.Diags.HasErrors() {
		r.Cluster = c
	}
	return r
}

// Format returns src in canonical HCL formatting.
func Format(src []byte) []byte { return hclwrite.Format(src) }

var (
	fileSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "cluster", LabelNames: []string{"name"}}}}

	clusterSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "primary", Required: true}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "postgres"}, {Type: "runtime", LabelNames: []string{"kind"}}, {Type: "node", LabelNames: []string{"name"}},
			{Type: "replication"}, {Type: "failover"}, {Type: "catalog", LabelNames: []string{"kind"}},
		},
	}
	postgresSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "version"}, {Name: "superuser"}, {Name: "password"}, {Name: "parameters"}}}
	runtimeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "data_dir"}, {Name: "bin_dir"}, {Name: "run_as"}}}
	dockerSchema  = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "image"}, {Name: "redis_image"}, {Name: "network"}, {Name: "host"}, {Name: "bind"}, {Name: "prefix"}}}
	nodeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "host"}, {Name: "port", Required: true}, {Name: "slot"}, {Name: "parameters"}, {Name: "prevent_destroy"}}}
	replicationSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "user"}, {Name: "password"}}}
	failoverSchema    = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "automatic"}, {Name: "check_interval"}, {Name: "failure_threshold"}, {Name: "maximum_lag"}, {Name: "failback"}}}
	catalogSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "address", Required: true}, {Name: "password"}, {Name: "db"}, {Name: "managed"}}}
)

// decoder turns HCL bodies into the model, collecting every diagnostic
// rather than stopping at the first.
type decoder struct {
	// failed remembers attributes whose evaluation failed, by block range + name.
	failed map[string]bool
	dir    string
	ctx    *hcl.EvalContext
	diags  hcl.Diagnostics
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	return c
}

// attrs decodes a body's attributes in schema order, so diagnostics come
// out in a stable order.
func (d *decoder) attrs(body hcl.Body, schema *hcl.BodySchema, f func(name string, a *hcl.Attribute)) {
	content := d.content(body, schema)
	for _, as := range schema.Attributes {
		if a := content.Attributes[as.Name]; a != nil {
			f(as.Name, a)
		}
	}
}

// pos formats a range's start as file:line:col.
func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func (d *decoder) file(body hcl.Body) *Cluster {
	content := d.content(body, fileSchema)
	switch len(content.Blocks) {
	case 1:
		return d.cluster(content.Blocks[0])
	case 0:
		d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No cluster block",
			Detail:  `A cluster file declares exactly one cluster "NAME" { ... } block; see README.md for an example.`,
			Subject: body.MissingItemRange().Ptr()})
	default:
		d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "More than one cluster block",
			Detail:  fmt.Sprintf("A cluster file declares exactly one cluster; the first is at %s. Put each cluster in its own file.", pos(content.Blocks[0].DefRange)),
			Subject: content.Blocks[1].DefRange.Ptr()})
	}
	return nil
}

func (d *decoder) cluster(b *hcl.Block) *Cluster {
	content := d.content(b.Body, clusterSchema)
	c := &Cluster{Name: b.Labels[0],
		Postgres:    Postgres{Superuser: "postgres", Parameters: map[string]string{}},
		Runtime:     Runtime{Kind: "local", DataDir: filepath.Join(d.dir, "data")},
		Replication: Replication{User: "replicator"},
		Failover:    Failover{CheckInterval: time.Second, FailureThreshold: 3, MaximumLag: 16 << 20, Failback: "manual"},
	}
	if os.Geteuid() == 0 {
		c.Runtime.RunAs = "postgres"
	}
	if a := content.Attributes["primary"]; a != nil {
		c.Primary, _ = d.str(a)
		c.PrimaryRange = a.Expr.Range()
	}
	seen := map[string]*hcl.Block{}
	var pgBlock, replBlock *hcl.Block
	for _, blk := range content.Blocks {
		if once(blk.Type) {
			if first := seen[blk.Type]; first != nil {
				d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Duplicate %s block", blk.Type),
					Detail:  fmt.Sprintf("Only one %s block is allowed; the first is at %s.", blk.Type, pos(first.DefRange)),
					Subject: blk.DefRange.Ptr()})
				continue
			}
			seen[blk.Type] = blk
		}
		switch blk.Type {
		case "postgres":
			pgBlock = blk
			d.postgres(blk, &c.Postgres)
		case "runtime":
			d.runtime(blk, &c.Runtime)
		case "node":
			c.Nodes = append(c.Nodes, d.node(blk))
		case "replication":
			replBlock = blk
			d.replication(blk, &c.Replication)
		case "failover":
			d.failover(blk, &c.Failover)
		case "catalog":
			c.Catalog = d.catalog(blk)
		}
	}
	d.requireSecret(c.Postgres.Password, pgBlock, b, "postgres", "the superuser's password", `password = env("PGHA_SUPERUSER_PASSWORD")`)
	d.requireSecret(c.Replication.Password, replBlock, b, "replication", "the replication user's password", `password = env("PGHA_REPLICATION_PASSWORD")`)
	if dk := &c.Runtime.Docker; c.IsDocker() {
		dk.Image = def(dk.Image, "postgres:17")
		dk.RedisImage = def(dk.RedisImage, "redis:7")
		dk.Network = def(dk.Network, "pgha-"+c.Name)
		dk.Bind = def(dk.Bind, "127.0.0.1")
		dk.Prefix = def(dk.Prefix, "pgha-"+c.Name+"-")
	}
	for _, n := range c.Nodes {
		n.DataDir = filepath.Join(c.Runtime.DataDir, n.Name)
		if c.IsDocker() {
			n.DataDir = DockerPGData
		}
	}
	if c.Catalog != nil {
		c.Catalog.DataDir = filepath.Join(c.Runtime.DataDir, "redis")
	}
	return c
}

// DockerPGData is PGDATA inside a node container; its volume is mounted
// one level up, at DockerVolumeDir, which also holds the passfile and log.
const (
	DockerVolumeDir = "/var/lib/pgha"
	DockerPGData    = DockerVolumeDir + "/data"
)

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func once(blockType string) bool {
	switch blockType {
	case "postgres", "runtime", "replication", "failover", "catalog":
		return true
	}
	return false
}

// requireSecret reports a missing password at the block that should hold
// it. A password whose expression already failed (env of an unset variable)
// has its own diagnostic and is not reported twice.
func (d *decoder) requireSecret(s Secret, blk, cluster *hcl.Block, name, what, example string) {
	if s.IsSet() || (blk != nil && d.failed[blk.DefRange.String()+".password"]) {
		return
	}
	subject := cluster.DefRange
	if blk != nil {
		subject = blk.DefRange
	}
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Missing %s password", name),
		Detail:  fmt.Sprintf("pgha needs %s. Add to the %s block: %s", what, name, example),
		Subject: subject.Ptr()})
}

func (d *decoder) postgres(b *hcl.Block, p *Postgres) {
	d.attrs(b.Body, postgresSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "version":
			p.Version, _ = d.integer(a)
		case "superuser":
			p.Superuser, _ = d.str(a)
		case "password":
			p.Password = d.secret(a, b)
		case "parameters":
			p.Parameters = d.params(a)
		}
	})
}

func (d *decoder) runtime(b *hcl.Block, r *Runtime) {
	switch b.Labels[0] {
	case "local":
	case "docker":
		r.Kind = "docker"
		d.attrs(b.Body, dockerSchema, func(name string, a *hcl.Attribute) {
			v, ok := d.str(a)
			if !ok {
				return
			}
			switch name {
			case "image":
				r.Docker.Image = v
			case "redis_image":
				r.Docker.RedisImage = v
			case "network":
				r.Docker.Network = v
			case "host":
				r.Docker.Host = v
			case "bind":
				r.Docker.Bind = v
			case "prefix":
				r.Docker.Prefix = v
			}
		})
		return
	default:
		d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unsupported runtime",
			Detail:  fmt.Sprintf("runtime %q is not supported by this version of pgha; use runtime \"local\" or runtime \"docker\".", b.Labels[0]),
			Subject: b.LabelRanges[0].Ptr()})
		return
	}
	d.attrs(b.Body, runtimeSchema, func(name string, a *hcl.Attribute) {
		v, ok := d.str(a)
		if !ok {
			return
		}
		switch name {
		case "data_dir":
			r.DataDir = d.path(v)
		case "bin_dir":
			r.BinDir = d.path(v)
		case "run_as":
			r.RunAs = v
		}
	})
}

func (d *decoder) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.dir, p)
}

func (d *decoder) node(b *hcl.Block) *Node {
	n := &Node{Name: b.Labels[0], Host: "127.0.0.1", DeclRange: b.DefRange}
	d.attrs(b.Body, nodeSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "host":
			n.Host, _ = d.str(a)
		case "port":
			var ok bool
			if n.Port, ok = d.integer(a); ok && (n.Port < 1 || n.Port > 65535) {
				d.errorAt(a.Expr.Range(), "Invalid port", fmt.Sprintf("port must be between 1 and 65535, not %d.", n.Port))
			}
		case "slot":
			var ok bool
			if n.Slot, ok = d.str(a); ok && n.Slot != "" && !slotRe.MatchString(n.Slot) {
				d.errorAt(a.Expr.Range(), "Invalid slot name",
					"A replication slot name has 1 to 63 characters: lower-case letters, digits and underscores.")
			}
		case "parameters":
			n.Parameters = d.params(a)
		case "prevent_destroy":
			n.PreventDestroy, _ = d.boolean(a)
		}
	})
	return n
}

func (d *decoder) replication(b *hcl.Block, r *Replication) {
	d.attrs(b.Body, replicationSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "user":
			var ok bool
			if r.User, ok = d.str(a); ok && !identRe.MatchString(r.User) {
				d.errorAt(a.Expr.Range(), "Invalid replication user",
					"The replication user must be a plain identifier: a letter or underscore, then letters, digits or underscores.")
			}
		case "password":
			r.Password = d.secret(a, b)
		}
	})
}

func (d *decoder) failover(b *hcl.Block, f *Failover) {
	d.attrs(b.Body, failoverSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "automatic":
			f.Automatic, _ = d.boolean(a)
		case "check_interval":
			if s, ok := d.str(a); ok {
				v, err := time.ParseDuration(s)
				switch {
				case err != nil:
					d.errorAt(a.Expr.Range(), "Invalid duration", fmt.Sprintf("%q is not a duration; write for example \"1s\", \"500ms\" or \"2m\".", s))
				case v <= 0:
					d.errorAt(a.Expr.Range(), "Invalid duration", "check_interval must be positive.")
				default:
					f.CheckInterval = v
				}
			}
		case "failure_threshold":
			var ok bool
			if f.FailureThreshold, ok = d.integer(a); ok && f.FailureThreshold < 1 {
				d.errorAt(a.Expr.Range(), "Invalid failure_threshold", "failure_threshold is a number of failed checks: 1 or more.")
			}
		case "maximum_lag":
			if s, ok := d.str(a); ok {
				v, err := ParseSize(s)
				if err != nil {
					d.errorAt(a.Expr.Range(), "Invalid size", err.Error()+".")
				} else {
					f.MaximumLag = v
				}
			}
		case "failback":
			var ok bool
			if f.Failback, ok = d.str(a); ok && f.Failback != "manual" && f.Failback != "automatic" {
				d.errorAt(a.Expr.Range(), "Invalid failback", fmt.Sprintf("failback is \"manual\" or \"automatic\", not %q.", f.Failback))
			}
		}
	})
}

func (d *decoder) catalog(b *hcl.Block) *Catalog {
	c := &Catalog{Kind: b.Labels[0], DeclRange: b.DefRange}
	if c.Kind != "redis" {
		d.errorAt(b.LabelRanges[0], "Unsupported catalog", fmt.Sprintf("catalog %q is not supported; use catalog \"redis\".", c.Kind))
		return nil
	}
	d.attrs(b.Body, catalogSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "address":
			var ok bool
			if c.Address, ok = d.str(a); ok {
				if _, _, err := splitHostPort(c.Address); err != nil {
					d.errorAt(a.Expr.Range(), "Invalid catalog address", fmt.Sprintf("%q is not host:port (e.g. \"127.0.0.1:6390\").", c.Address))
				}
			}
		case "password":
			c.Password = d.secret(a, b)
		case "db":
			c.DB, _ = d.integer(a)
		case "managed":
			c.Managed, _ = d.boolean(a)
		}
	})
	return c
}

func (d *decoder) errorAt(r hcl.Range, summary, detail string) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()})
}
