package clusterfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/pgha/pgha/config"
)

// The schema: each block lists the attributes it accepts, so that HCL
// reports anything else (a typo such as shared_bufers) at its range.
var (
	fileSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "cluster", LabelNames: []string{"name"}}}}

	clusterSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "primary"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "postgres"}, {Type: "runtime", LabelNames: []string{"kind"}}, {Type: "node", LabelNames: []string{"name"}},
			{Type: "replication"}, {Type: "failover"}, {Type: "agent"}, {Type: "catalog", LabelNames: []string{"kind"}}, {Type: "authority", LabelNames: []string{"kind"}}, {Type: "backup"}, {Type: "tls"},
			{Type: "watch"}, {Type: "api"},
		},
	}
	postgresSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "version"}, {Name: "superuser"}, {Name: "password"}, {Name: "parameters"}}}
	runtimeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "data_dir"}, {Name: "bin_dir"}, {Name: "run_as"}}}
	dockerSchema  = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "image"}, {Name: "redis_image"}, {Name: "network"}, {Name: "host"}, {Name: "bind"}, {Name: "prefix"},
		{Name: "ca_file"}, {Name: "cert_file"}, {Name: "key_file"}, {Name: "insecure_tcp"}}}
	nodeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "host"}, {Name: "port", Required: true}, {Name: "slot"}, {Name: "parameters"}, {Name: "prevent_destroy"}, {Name: "priority"}, {Name: "health_port"}}}
	replicationSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "user"}, {Name: "password"}},
		Blocks: []hcl.BlockHeaderSchema{{Type: "synchronous"}}}
	synchronousSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "standbys"}, {Name: "mode"}, {Name: "strict"}}}
	failoverSchema    = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "automatic"}, {Name: "check_interval"}, {Name: "failure_threshold"}, {Name: "maximum_lag"}, {Name: "failback"}, {Name: "primary_crash"}}}
	agentSchema     = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "self_fence"}}}
	watchSchema     = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "heal"}, {Name: "rejoin"}, {Name: "config"}}}
	apiSchema       = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "listen"}, {Name: "token"}, {Name: "tls"}}}
	tlsSchema       = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "enabled"}, {Name: "dir"}}}
	authoritySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "endpoints", Required: true}, {Name: "username"}, {Name: "password"}, {Name: "ttl"},
		{Name: "ca_file"}, {Name: "cert_file"}, {Name: "key_file"}}}
	catalogSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "address", Required: true}, {Name: "password"}, {Name: "db"}, {Name: "managed"}}}
)

var (
	// slotRe is what PostgreSQL accepts as a replication slot name.
	slotRe = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	// identRe is a role name that needs no quoting in SQL or a conninfo.
	identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	// nameRe keeps cluster and node names safe as directory names (a node's
	// data directory is <data_dir>/<name>), Redis keys and container names.
	nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

// runningAsRoot decides run_as's default; a variable so that tests (and
// their golden files) do not depend on who runs them.
var runningAsRoot = func() bool { return os.Geteuid() == 0 }

// decoder turns HCL bodies into the model, collecting every diagnostic
// rather than stopping at the first.
type decoder struct {
	dir   string
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics

	// ranges and sensitive are keyed by the address of a decoded model
	// field (&n.Port): the range of the expression that gave it, and
	// whether that value came from env() or file(). Checks across blocks
	// use them to point at the right place without quoting a secret.
	ranges    map[any]hcl.Range
	sensitive map[any]bool

	clusterRange   hcl.Range
	nameRanges     map[*config.Node]hcl.Range
	primaryDecoded bool
	clusterBodyBad bool
	// dockerRange is the runtime "docker" block's, for diagnostics about
	// the engine that no one attribute gave.
	dockerRange hcl.Range
	// apiTLS is api { tls } when written; unset, the API follows the
	// cluster's tls block, which may come after it.
	apiTLS *bool
}

func newDecoder(dir string) *decoder {
	return &decoder{
		dir:        dir,
		ctx:        &hcl.EvalContext{Functions: functions(dir)},
		ranges:     map[any]hcl.Range{},
		sensitive:  map[any]bool{},
		nameRanges: map[*config.Node]hcl.Range{},
	}
}

func (d *decoder) errorAt(r hcl.Range, summary, detail string) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()})
}

// attrs decodes a body's attributes in schema order; f is called for each
// attribute present. Unknown attributes and blocks are reported by HCL.
func (d *decoder) attrs(body hcl.Body, schema *hcl.BodySchema, f func(name string, a *hcl.Attribute)) {
	content, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	for _, as := range schema.Attributes {
		if a := content.Attributes[as.Name]; a != nil {
			f(as.Name, a)
		}
	}
}

func (d *decoder) file(body hcl.Body) *config.Cluster {
	content, diags := body.Content(fileSchema)
	d.diags = append(d.diags, diags...)
	switch len(content.Blocks) {
	case 1:
		return d.cluster(content.Blocks[0])
	case 0:
		if !diags.HasErrors() {
			d.errorAt(body.MissingItemRange(), "No cluster block",
				`A cluster file declares exactly one cluster "NAME" { ... } block; README.md shows a complete one.`)
		}
	default:
		d.errorAt(content.Blocks[1].DefRange, "More than one cluster block",
			fmt.Sprintf("A cluster file declares exactly one cluster; the first is at %s. Put each cluster in its own file.", pos(content.Blocks[0].DefRange)))
	}
	return nil
}

func (d *decoder) cluster(b *hcl.Block) *config.Cluster {
	d.clusterRange = b.DefRange
	c := &config.Cluster{Name: b.Labels[0],
		Postgres:    config.Postgres{Superuser: "postgres", Parameters: map[string]string{}},
		Runtime:     config.Runtime{Kind: "local", DataDir: filepath.Join(d.dir, "data")},
		Replication: config.Replication{User: "replicator"},
		Failover: config.Failover{Automatic: true, CheckInterval: time.Second, FailureThreshold: 3, MaximumLag: 16 << 20,
			Failback: "manual", PrimaryCrash: "restart"},
		Watch: config.Watch{Heal: true, Rejoin: "rewind", Config: "apply"},
		TLS:   config.TLS{Enabled: true},
	}
	if runningAsRoot() {
		c.Runtime.RunAs = "postgres"
	}
	if !nameRe.MatchString(c.Name) {
		d.errorAt(b.LabelRanges[0], "Invalid cluster name",
			"A cluster name has 1 to 63 characters: letters, digits, '_', '.' and '-', starting with a letter or digit.")
	}
	content, diags := b.Body.Content(clusterSchema)
	d.diags = append(d.diags, diags...)
	// A misspelt block (nodes, postgress) is reported by HCL; saying that
	// the block is also missing would only repeat it.
	d.clusterBodyBad = diags.HasErrors()
	if a := content.Attributes["primary"]; a != nil {
		d.primaryDecoded = d.str(a, &c.Primary)
		c.PrimaryRange = a.Expr.Range()
	} else {
		d.errorAt(b.DefRange, "Missing primary", `Say which node is the primary, e.g. primary = "db1".`)
	}
	seen := map[string]*hcl.Block{}
	for _, blk := range content.Blocks {
		if blk.Type != "node" {
			if first := seen[blk.Type]; first != nil {
				d.errorAt(blk.DefRange, fmt.Sprintf("Duplicate %s block", blk.Type),
					fmt.Sprintf("Only one %s block is allowed; the first is at %s. Merge the two.", blk.Type, pos(first.DefRange)))
				continue
			}
			seen[blk.Type] = blk
		}
		switch blk.Type {
		case "postgres":
			d.postgres(blk, &c.Postgres)
		case "runtime":
			d.runtime(blk, &c.Runtime)
		case "node":
			c.Nodes = append(c.Nodes, d.node(blk))
		case "replication":
			d.replication(blk, &c.Replication)
		case "failover":
			d.failover(blk, &c.Failover)
		case "agent":
			c.Agent = d.agent(blk)
		case "watch":
			d.watch(blk, &c.Watch)
		case "catalog":
			c.Catalog = d.catalog(blk)
		case "authority":
			c.Authority = d.authority(blk)
		case "backup":
			c.Backup = d.backup(blk)
		case "tls":
			d.tls(blk, &c.TLS)
		case "api":
			c.API = d.api(blk)
		}
	}
	if seen["postgres"] == nil && !d.clusterBodyBad {
		d.errorAt(b.DefRange, "Missing postgres block",
			"Declare the superuser's password at least:\n  postgres {\n    password = env(\"PGHA_SUPERUSER_PASSWORD\")\n  }")
	}
	if seen["replication"] == nil && !d.clusterBodyBad {
		d.errorAt(b.DefRange, "Missing replication block",
			"Declare the replication user's password at least:\n  replication {\n    password = env(\"PGHA_REPLICATION_PASSWORD\")\n  }")
	}
	if dk := &c.Runtime.Docker; c.IsDocker() {
		dk.Image = def(dk.Image, "postgres:17")
		dk.RedisImage = def(dk.RedisImage, "redis:7")
		dk.Network = def(dk.Network, "pgha-"+c.Name)
		dk.Bind = def(dk.Bind, "127.0.0.1") // a tcp:// engine's default was set by dockerEngine
		dk.Prefix = def(dk.Prefix, "pgha-"+c.Name+"-")
	}
	for _, n := range c.Nodes {
		n.DataDir = filepath.Join(c.Runtime.DataDir, n.Name)
		if c.IsDocker() {
			n.DataDir = config.DockerPGData
		}
	}
	if c.Catalog != nil {
		c.Catalog.DataDir = filepath.Join(c.Runtime.DataDir, "redis")
		d.catalogPassword(c.Catalog)
	}
	if c.TLS.Dir == "" {
		c.TLS.Dir = filepath.Join(c.Runtime.DataDir, "tls")
	}
	if c.API != nil {
		c.API.TLS = c.TLS.Enabled
		if d.apiTLS != nil {
			c.API.TLS = *d.apiTLS
		}
	}
	return c
}

// tls decodes tls { enabled, dir }; an empty block keeps the defaults
// (on, pgha's own CA under data_dir).
func (d *decoder) tls(b *hcl.Block, t *config.TLS) {
	t.DeclRange = b.DefRange
	d.attrs(b.Body, tlsSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "enabled":
			d.boolean(a, &t.Enabled)
		case "dir":
			var v string
			if !d.str(a, &v) {
				return
			}
			if v == "" {
				d.errorAt(a.Expr.Range(), "Empty dir",
					`dir holds the cluster's CA and certificates; leave it out for pgha's own CA under data_dir ("./data/tls").`)
				return
			}
			t.Dir = d.path(v)
		}
	})
}

// api decodes api { listen, token, tls }. tls is left unset here and
// defaults to the cluster's tls once the whole block is read.
func (d *decoder) api(b *hcl.Block) *config.API {
	a := &config.API{Listen: "127.0.0.1:8088", DeclRange: b.DefRange}
	d.apiTLS = nil
	d.attrs(b.Body, apiSchema, func(name string, at *hcl.Attribute) {
		switch name {
		case "listen":
			if !d.str(at, &a.Listen) {
				return
			}
			if _, _, err := config.SplitAddress(a.Listen); err != nil {
				d.errorAt(at.Expr.Range(), "Invalid api listen",
					fmt.Sprintf("listen = %s is not host:port; write for example \"127.0.0.1:8088\".", d.show(&a.Listen, a.Listen)))
				a.Listen = "127.0.0.1:8088"
			}
		case "token":
			s, ok := d.secret(at)
			if !ok {
				return
			}
			if !s.IsSet() {
				d.errorAt(at.Expr.Range(), "Empty api token",
					"The token guards every call that changes the cluster, and this one is empty. Generate one (make secrets writes .secrets/api) and write token = file(\"./.secrets/api\"), or leave token out for a read-only API.")
				return
			}
			a.Token = s
		case "tls":
			var v bool
			if d.boolean(at, &v) {
				d.apiTLS = &v
			}
		}
	})
	return a
}

// password decodes a required password. A missing one is reported at the
// block that should hold it, an empty one at the attribute; one whose
// expression failed (env of an unset variable) already has a diagnostic.
func (d *decoder) password(b *hcl.Block, a *hcl.Attribute, dst *config.Secret, what, env string) {
	if a == nil {
		d.errorAt(b.DefRange, fmt.Sprintf("Missing %s password", b.Type),
			fmt.Sprintf("pgha needs %s. Add to the %s block: password = env(%q) (or file(\"PATH\")).", what, b.Type, env))
		return
	}
	s, ok := d.secret(a)
	if !ok {
		return
	}
	if !s.IsSet() {
		d.errorAt(a.Expr.Range(), fmt.Sprintf("Empty %s password", b.Type),
			fmt.Sprintf("pgha needs %s, and this one is empty. Give it a value, e.g. export %s=... and password = env(%q).", what, env, env))
		return
	}
	*dst = s
}

func (d *decoder) postgres(b *hcl.Block, p *config.Postgres) {
	var pw *hcl.Attribute
	d.attrs(b.Body, postgresSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "version":
			if d.integer(a, &p.Version) && p.Version < 0 {
				d.errorAt(a.Expr.Range(), "Invalid version", "version is a PostgreSQL major version such as 15 or 17; leave it out to accept the installed one.")
			}
		case "superuser":
			if d.str(a, &p.Superuser) && !identRe.MatchString(p.Superuser) {
				d.errorAt(a.Expr.Range(), "Invalid superuser",
					"The superuser must be a plain identifier: a letter or underscore, then letters, digits or underscores.")
			}
		case "password":
			pw = a
		case "parameters":
			p.Parameters = d.params(a)
		}
	})
	d.password(b, pw, &p.Password, "the superuser's password", "PGHA_SUPERUSER_PASSWORD")
}

func (d *decoder) runtime(b *hcl.Block, r *config.Runtime) {
	switch kind := b.Labels[0]; kind {
	case "local":
	case "docker":
		r.Kind = "docker"
		d.docker(b, &r.Docker)
		return
	default:
		d.errorAt(b.LabelRanges[0], "Unsupported runtime",
			fmt.Sprintf("runtime %q is not supported by this version of pgha; use runtime \"local\" or runtime \"docker\".", kind))
		return
	}
	d.attrs(b.Body, runtimeSchema, func(name string, a *hcl.Attribute) {
		var v string
		if !d.str(a, &v) {
			return
		}
		switch name {
		case "data_dir":
			if v == "" {
				d.errorAt(a.Expr.Range(), "Empty data_dir", `data_dir holds the nodes' data directories; leave it out for the default "./data".`)
				return
			}
			r.DataDir = d.path(v)
		case "bin_dir":
			r.BinDir = d.path(v)
		case "run_as":
			r.RunAs = v
		}
	})
}

// docker decodes runtime "docker"; empty values take the defaults. The
// engine (host, its TLS files, bind) is checked in dockerEngine once the
// whole block is read.
func (d *decoder) docker(b *hcl.Block, dk *config.Docker) {
	d.dockerRange = b.DefRange
	d.attrs(b.Body, dockerSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "image":
			d.str(a, &dk.Image)
		case "redis_image":
			d.str(a, &dk.RedisImage)
		case "network":
			d.str(a, &dk.Network)
		case "host":
			d.str(a, &dk.Host)
		case "bind":
			d.str(a, &dk.Bind)
		case "prefix":
			d.str(a, &dk.Prefix)
		case "ca_file":
			d.filePath(a, &dk.CAFile)
		case "cert_file":
			d.filePath(a, &dk.CertFile)
		case "key_file":
			d.filePath(a, &dk.KeyFile)
		case "insecure_tcp":
			d.boolean(a, &dk.InsecureTCP)
		}
	})
	d.dockerEngine(dk)
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// path resolves p against the cluster file's directory, so that a cluster
// file means the same thing whatever directory pgha runs in.
func (d *decoder) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.dir, p)
}

func (d *decoder) node(b *hcl.Block) *config.Node {
	n := &config.Node{Name: b.Labels[0], Host: "127.0.0.1", DeclRange: b.DefRange}
	d.nameRanges[n] = b.LabelRanges[0]
	if !nameRe.MatchString(n.Name) {
		d.errorAt(b.LabelRanges[0], "Invalid node name",
			"A node name has 1 to 63 characters: letters, digits, '_', '.' and '-', starting with a letter or digit; it names the node's data directory.")
	}
	d.attrs(b.Body, nodeSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "host":
			if d.str(a, &n.Host) {
				switch {
				case n.Host == "":
					d.errorAt(a.Expr.Range(), "Empty host", `host is the address pgha and the other nodes connect to; leave it out for "127.0.0.1".`)
				case !config.ValidHost(n.Host):
					d.errorAt(a.Expr.Range(), "Invalid host",
						fmt.Sprintf("host = %s is neither an IP address nor a DNS name (labels of letters, digits and '-', dot-separated, at most 253 characters); it goes into every node's pg_hba.conf and conninfo.", d.show(&n.Host, n.Host)))
					n.Host = "" // reported; not compared with other endpoints
				}
			}
		case "port":
			if d.integer(a, &n.Port) && (n.Port < 1 || n.Port > 65535) {
				d.errorAt(a.Expr.Range(), "Invalid port",
					fmt.Sprintf("port must be between 1 and 65535, not %s.", d.show(&n.Port, n.Port)))
				n.Port = 0
			}
		case "slot":
			if d.str(a, &n.Slot) && n.Slot != "" && !slotRe.MatchString(n.Slot) {
				d.errorAt(a.Expr.Range(), "Invalid slot name",
					"A replication slot name has 1 to 63 characters: lower-case letters, digits and underscores.")
				n.Slot = "" // reported; not compared with other slots
			}
		case "parameters":
			n.Parameters = d.params(a)
		case "prevent_destroy":
			d.boolean(a, &n.PreventDestroy)
		case "priority":
			d.integer(a, &n.Priority)
		case "health_port":
			if d.integer(a, &n.HealthPort) && (n.HealthPort < 1 || n.HealthPort > 65535) {
				d.errorAt(a.Expr.Range(), "Invalid health_port",
					fmt.Sprintf("health_port must be between 1 and 65535, not %s; `pgha watch` answers this node's health checks there.", d.show(&n.HealthPort, n.HealthPort)))
				n.HealthPort = 0
			}
		}
	})
	return n
}

func (d *decoder) replication(b *hcl.Block, r *config.Replication) {
	var pw *hcl.Attribute
	content, _ := b.Body.Content(replicationSchema) // diagnostics: reported once, by attrs below
	for i, blk := range content.Blocks {
		if i > 0 {
			d.errorAt(blk.DefRange, "Duplicate synchronous block",
				fmt.Sprintf("Only one synchronous block is allowed; the first is at %s. Merge the two.", pos(content.Blocks[0].DefRange)))
			continue
		}
		r.Synchronous = d.synchronous(blk)
	}
	d.attrs(b.Body, replicationSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "user":
			if d.str(a, &r.User) && !identRe.MatchString(r.User) {
				d.errorAt(a.Expr.Range(), "Invalid replication user",
					"The replication user must be a plain identifier: a letter or underscore, then letters, digits or underscores.")
			}
		case "password":
			pw = a
		}
	})
	d.password(b, pw, &r.Password, "the replication user's password", "PGHA_REPLICATION_PASSWORD")
}

// synchronous decodes replication { synchronous { standbys, mode, strict } }.
// How many standbys a cluster can have is checked in validate, which sees
// every node.
func (d *decoder) synchronous(b *hcl.Block) *config.Synchronous {
	s := &config.Synchronous{Standbys: 1, Mode: config.SyncQuorum, DeclRange: b.DefRange}
	d.attrs(b.Body, synchronousSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "standbys":
			if d.integer(a, &s.Standbys) && s.Standbys < 1 {
				d.errorAt(a.Expr.Range(), "Invalid standbys",
					fmt.Sprintf("standbys is how many standbys confirm each commit: 1 or more, not %s. For asynchronous replication leave the synchronous block out.", d.show(&s.Standbys, s.Standbys)))
				s.Standbys = 1
			}
		case "mode":
			d.oneOf(a, &s.Mode, "Invalid mode",
				`mode is "quorum" (any of the standbys confirm: ANY n (...)) or "priority" (the first ones in declaration order: FIRST n (...)), not %s.`,
				config.SyncQuorum, config.SyncPriority)
		case "strict":
			d.boolean(a, &s.Strict)
		}
	})
	return s
}

func (d *decoder) failover(b *hcl.Block, f *config.Failover) {
	d.attrs(b.Body, failoverSchema, func(name string, a *hcl.Attribute) {
		var s string
		switch name {
		case "automatic":
			d.boolean(a, &f.Automatic)
		case "check_interval":
			if !d.str(a, &s) {
				return
			}
			v, err := time.ParseDuration(s)
			switch {
			case err != nil:
				d.errorAt(a.Expr.Range(), "Invalid duration",
					fmt.Sprintf("check_interval = %s is not a duration; write for example \"1s\", \"500ms\" or \"2m\".", d.show(&s, s)))
			case v <= 0:
				d.errorAt(a.Expr.Range(), "Invalid duration", "check_interval must be positive, e.g. \"1s\".")
			default:
				f.CheckInterval = v
			}
		case "failure_threshold":
			if d.integer(a, &f.FailureThreshold) && f.FailureThreshold < 1 {
				d.errorAt(a.Expr.Range(), "Invalid failure_threshold",
					"failure_threshold is the number of failed checks in a row before failover: 1 or more (default 3).")
			}
		case "maximum_lag":
			if !d.str(a, &s) {
				return
			}
			v, err := config.ParseSize(s)
			switch {
			case err != nil && d.sensitive[&s]:
				d.errorAt(a.Expr.Range(), "Invalid size",
					"maximum_lag (a sensitive value from env() or file()) is not a size; write a number with a unit: B, kB, MB, GB or TB (e.g. \"16MB\").")
			case err != nil:
				d.errorAt(a.Expr.Range(), "Invalid size", "maximum_lag: "+err.Error()+".")
			default:
				f.MaximumLag = v
			}
		case "failback":
			if d.str(a, &f.Failback) && f.Failback != "manual" && f.Failback != "automatic" {
				d.errorAt(a.Expr.Range(), "Invalid failback",
					fmt.Sprintf("failback is \"manual\" or \"automatic\", not %s.", d.show(&f.Failback, f.Failback)))
			}
		case "primary_crash":
			d.oneOf(a, &f.PrimaryCrash, "Invalid primary_crash",
				`primary_crash is "restart" (start the crashed server again in place, losing nothing) or "failover" (promote a standby at once), not %s.`,
				"restart", "failover")
		}
	})
}

// agent decodes agent { self_fence }: every node's host runs `pgha
// agent`, which stops an isolated primary within self_fence (see
// config.Agent for the arithmetic of the lease).
func (d *decoder) agent(b *hcl.Block) *config.Agent {
	ag := &config.Agent{SelfFence: 5 * time.Second, DeclRange: b.DefRange}
	d.attrs(b.Body, agentSchema, func(name string, a *hcl.Attribute) {
		var s string
		if name != "self_fence" || !d.str(a, &s) {
			return
		}
		v, err := time.ParseDuration(s)
		switch {
		case err != nil:
			d.errorAt(a.Expr.Range(), "Invalid duration",
				fmt.Sprintf("self_fence = %s is not a duration; write for example \"5s\".", d.show(&s, s)))
		case v < time.Second:
			d.errorAt(a.Expr.Range(), "self_fence too short",
				fmt.Sprintf("self_fence = %s: the agent renews its member lease every third of it, and a store that answers a renewal late would fence a healthy primary; write 1s or more (default 5s).", d.show(&s, s)))
		default:
			ag.SelfFence = v
		}
	})
	return ag
}

// watch decodes watch { heal, rejoin, config }: what `pgha watch` may do
// without a person. Attributes left out keep their defaults.
func (d *decoder) watch(b *hcl.Block, w *config.Watch) {
	w.DeclRange = b.DefRange
	d.attrs(b.Body, watchSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "heal":
			d.boolean(a, &w.Heal)
		case "rejoin":
			d.oneOf(a, &w.Rejoin, "Invalid rejoin",
				`rejoin is "rewind" (the watcher rewinds a former primary and makes it follow) or "manual" (it waits for pgha apply), not %s.`,
				"rewind", "manual")
		case "config":
			d.oneOf(a, &w.Config, "Invalid config",
				`config is "apply" (the watcher applies edits of the cluster file) or "plan" (it reports them and applies nothing), not %s.`,
				"apply", "plan")
		}
	})
}

// oneOf decodes a string that must be one of allowed; detail has one %s
// for the value given (shown without revealing a sensitive one). A bad
// value leaves *dst at its default.
func (d *decoder) oneOf(a *hcl.Attribute, dst *string, summary, detail string, allowed ...string) {
	var v string
	if !d.str(a, &v) {
		return
	}
	for _, ok := range allowed {
		if v == ok {
			*dst = v
			return
		}
	}
	d.errorAt(a.Expr.Range(), summary, fmt.Sprintf(detail, d.show(&v, v)))
}

// catalogPassword gives a managed catalog without a declared password the
// one pgha generated for it (reconcile writes the file when it first starts
// Redis, or when it secures a Redis that ran without one).
func (d *decoder) catalogPassword(c *config.Catalog) {
	if !c.Managed || c.Password.Reveal() != "" {
		return
	}
	c.PasswordFile = filepath.Join(d.dir, ".secrets", "catalog")
	b, err := os.ReadFile(c.PasswordFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		d.errorAt(c.DeclRange, "Unreadable catalog password",
			fmt.Sprintf("pgha keeps the managed catalog's generated password in %s, which cannot be read: %v. Fix its permissions, or declare password = file(...) in catalog \"redis\".", c.PasswordFile, errors.Unwrap(err)))
	default:
		c.Password = config.NewSecret(strings.TrimSpace(string(b)))
	}
}

func (d *decoder) catalog(b *hcl.Block) *config.Catalog {
	c := &config.Catalog{Kind: b.Labels[0], DeclRange: b.DefRange}
	if c.Kind != "redis" {
		d.errorAt(b.LabelRanges[0], "Unsupported catalog", fmt.Sprintf("catalog %q is not supported; use catalog \"redis\".", c.Kind))
		return nil
	}
	d.attrs(b.Body, catalogSchema, func(name string, a *hcl.Attribute) {
		switch name {
		case "address":
			if !d.str(a, &c.Address) {
				return
			}
			if _, _, err := config.SplitAddress(c.Address); err != nil {
				d.errorAt(a.Expr.Range(), "Invalid catalog address",
					fmt.Sprintf("address = %s is not host:port; write for example \"127.0.0.1:6390\".", d.show(&c.Address, c.Address)))
				c.Address = ""
			}
		case "password":
			if s, ok := d.secret(a); ok {
				c.Password = s
			}
		case "db":
			if d.integer(a, &c.DB) && c.DB < 0 {
				d.errorAt(a.Expr.Range(), "Invalid db", "db is a Redis database number: 0 or more (default 0).")
			}
		case "managed":
			d.boolean(a, &c.Managed)
		}
	})
	return c
}
