// Package config is the typed desired state of a cluster: the model that
// cluster.hcl decodes into, checks of single values (hosts, addresses,
// sizes, schedules) and the names derived from it (endpoints, container
// names, paths, conninfo). Secrets are held in Secret values that refuse
// to print.
//
// It is pure: reading cluster.hcl — the file, env() and file(), the
// managed catalog's password file — and its diagnostics with
// file:line:col live in config/clusterfile, so that plan, which imports
// config, touches neither disk nor network (plan's TestPurity checks it).
package config

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Cluster is the desired state declared by one cluster "NAME" block.
type Cluster struct {
	Name    string
	Primary string

	Postgres    Postgres
	Runtime     Runtime
	Nodes       []*Node // in file order
	Replication Replication
	Failover    Failover
	Watch       Watch
	Catalog     *Catalog // nil when no catalog block
	Backup      *Backup  // nil when no backup block
	TLS         TLS
	API         *API // nil when no api block: `pgha watch` serves nothing

	// File is the absolute path of the cluster file, Dir its directory;
	// relative paths in the file resolve against Dir.
	File string
	Dir  string
	// Hash is "sha256:<hex>" of the file's bytes; saved plans carry it.
	Hash string

	// Ranges of declarations, for diagnostics raised after decoding.
	PrimaryRange hcl.Range `json:"-"`
}

// Node returns the node with that name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// PrimaryNode returns the declared primary.
func (c *Cluster) PrimaryNode() *Node { return c.Node(c.Primary) }

// Postgres holds server-wide settings.
type Postgres struct {
	Version   int    // expected major version; 0 = whatever the runtime has
	Superuser string // default "postgres"
	Password  Secret // required
	// Parameters are postgresql.conf settings applied to every node, as
	// strings exactly as written (numbers and bools converted to text).
	Parameters map[string]string
}

// Runtime says where nodes run: "local" processes or "docker" containers.
type Runtime struct {
	Kind    string // "local" | "docker"
	DataDir string // local: absolute; default <Dir>/data
	BinDir  string // local: absolute; "" = find PostgreSQL binaries automatically
	RunAs   string // local: OS user running servers; default "postgres" when pgha runs as root, else ""

	Docker Docker // docker only
}

// Docker configures the docker runtime.
type Docker struct {
	Image      string // PostgreSQL image; default "postgres:17"
	RedisImage string // managed catalog image; default "redis:7"
	Network    string // default "pgha-<cluster>"
	Host       string // Docker engine; "" = DOCKER_HOST or the local socket
	Bind       string // address published ports bind to; default "127.0.0.1"
	Prefix     string // resource name prefix; default "pgha-<cluster>-"
}

// IsDocker reports whether nodes run as containers.
func (c *Cluster) IsDocker() bool { return c.Runtime.Kind == "docker" }

// DockerPGData is PGDATA inside a node container; its volume is mounted
// one level up, at DockerVolumeDir, which also holds the passfile and log.
const (
	DockerVolumeDir = "/var/lib/pgha"
	DockerPGData    = DockerVolumeDir + "/data"
)

// Node is one PostgreSQL server.
type Node struct {
	Name string
	Host string // default "127.0.0.1"
	Port int    // required
	// Slot is the physical replication slot this node streams through when
	// it is a standby; "" = none.
	Slot string
	// Parameters override Postgres.Parameters for this node.
	Parameters     map[string]string
	PreventDestroy bool
	// Priority breaks ties between failover candidates that received the
	// same WAL: higher first; 0 (the default) after any positive one.
	Priority int
	// DataDir is absolute: <Runtime.DataDir>/<Name>.
	DataDir string
	// HealthPort is where `pgha watch` answers this node's health checks
	// (/primary, /replica, ...) on the api block's host, as Patroni's
	// REST API does on each of its nodes: a load balancer checks each
	// server on its own port ("check port 8008"). 0: none.
	HealthPort int

	DeclRange hcl.Range `json:"-"`
}

// Replication is the streaming replication user.
type Replication struct {
	User     string // default "replicator"
	Password Secret // required
}

// Failover is the failover policy that `pgha watch` acts on (plan.Permit
// reads it); `pgha failover` and `pgha apply` use MaximumLag whatever
// Automatic says, since a person asked for them.
type Failover struct {
	// Automatic lets the watcher replace a lost primary. Default true:
	// a watcher that only reports a dead primary is what issue 11 set out
	// to end; write automatic = false to keep failover in a person's hands.
	Automatic        bool
	CheckInterval    time.Duration // default 1s
	FailureThreshold int           // default 3
	MaximumLag       int64         // bytes; default 16MB
	Failback         string        // "manual" (default) | "automatic"
	// PrimaryCrash is what the watcher does when the primary's server
	// process died while its runtime (host, container engine) still
	// answers: "restart" (default) starts it again in place, losing
	// nothing, as Patroni and pg_auto_failover do; "failover" promotes a
	// standby at once, faster, losing at most MaximumLag.
	PrimaryCrash string
}

// Watch is what `pgha watch` may do by itself besides failover; what it
// may not do is planned, logged "held by policy" and left for `pgha apply`.
type Watch struct {
	// Heal starts stopped nodes, recreates containers, re-points
	// standbys, recreates slots and takes and expires due backups.
	// Default true.
	Heal bool
	// Rejoin is "rewind" (default): a former primary is rewound (what it
	// wrote after the fork is discarded, and recorded) and follows the new
	// primary; or "manual": it waits for `pgha apply`.
	Rejoin string
	// Config is "apply" (default): edits of cluster.hcl are applied; or
	// "plan": they are reported and nothing is applied.
	Config string

	DeclRange hcl.Range `json:"-"`
}

// TLS says whether the cluster's connections are encrypted and
// authenticated with certificates, and where the certificates live.
//
// TLS is on unless the file says tls { enabled = false }: a new cluster
// starts with it, and an existing one that predates it is moved to it by
// its next plan (certificates, ssl = on and hostssl by reload). There is
// no "new cluster" test: one rule for both keeps the file the truth.
type TLS struct {
	Enabled bool // default true
	// Dir is the certificate store (see internal/pki): ca.crt and, when
	// pgha manages the CA, ca.key; NAME.crt and NAME.key for every node,
	// for pgha and for the managed Redis. Default <data_dir>/tls, where
	// pgha creates its CA. Files an operator puts there are used as they
	// are; without ca.key pgha issues nothing and the plan says what is
	// missing or expiring.
	Dir string

	DeclRange hcl.Range `json:"-"`
}

// API is what `pgha watch` serves over HTTP: the control API (status,
// plan, switchover, failover, failback), server-sent events, /metrics,
// the dashboard at /ui, and the health checks of every node (also on
// each node's HealthPort).
type API struct {
	// Listen is host:port of the API; default "127.0.0.1:8088". The
	// nodes' health ports bind to the same host.
	Listen string
	// Token is required as "Authorization: Bearer <token>" by every call
	// that changes the cluster; unset, those calls are refused (403) and
	// the API only reads.
	Token Secret
	// TLS serves HTTPS with a certificate the cluster CA issues (see
	// TLS); default: on when the cluster's tls is.
	TLS bool

	DeclRange hcl.Range `json:"-"`
}

// APIHost is the host of api.listen, where the health ports bind too.
func (a *API) Host() string {
	h, _, err := SplitAddress(a.Listen)
	if err != nil {
		return "127.0.0.1"
	}
	return h
}

// Catalog is the Redis catalog: backup metadata, cluster record, apply lock.
type Catalog struct {
	Kind     string // "redis"
	Address  string // host:port, required
	Password Secret // optional
	DB       int
	// Managed makes the runtime start and keep a redis-server with
	// persistence on (appendonly) under <Runtime.DataDir>/redis.
	Managed bool
	DataDir string // absolute, for managed Redis
	// PasswordFile is where pgha keeps the password it generated for a
	// managed catalog that declares none: <cluster dir>/.secrets/catalog
	// (mode 0600, in a 0700 directory, beside the demo's other secrets).
	// Password holds its content once it exists; "" when a password is
	// declared or the catalog is not managed.
	PasswordFile string

	DeclRange hcl.Range `json:"-"`
}

// Secret is a value that must never be printed: String, GoString, Format
// (every fmt verb), MarshalJSON, MarshalText and LogValue all give a
// placeholder, so a secret cannot leak through a log line, an error or a
// JSON plan by accident. Reveal is the one way to read it.
//
// The value itself is not in the struct but behind an interned reference
// (see secret.go), so that reflection-based printers (go-cmp's diffs,
// spew) have nothing to show either; == and reflect.DeepEqual still
// compare values.
type Secret struct{ ref *secretRef }

// NewSecret wraps a secret value; NewSecret("") is the unset Secret{}.
func NewSecret(v string) Secret { return Secret{ref: intern(v)} }

// Reveal returns the secret for use in a connection, never for display.
func (s Secret) Reveal() string { return reveal(s.ref) }

// IsSet reports whether a non-empty value was given.
func (s Secret) IsSet() bool { return s.ref != nil }

const redacted = "(sensitive)"

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue keeps secrets out of log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Format covers the verbs that String does not (%d, %x on a struct would
// otherwise print the hidden field through reflection).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// Equal lets go-cmp and tests compare secrets without reading the field
// (and without cmp.AllowUnexported), e.g. to see that a password changed.
func (s Secret) Equal(o Secret) bool { return s.ref == o.ref }
