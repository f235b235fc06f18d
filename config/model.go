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
	"net/url"
	"strings"
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
	Agent       *Agent // nil when no agent block: no node runs `pgha agent`
	Watch       Watch
	Catalog     *Catalog // nil when no catalog block
	// Authority is where the lock, the leader lease and the cluster
	// record live when not in the catalog: nil means the Redis catalog.
	Authority *Authority
	Backup    *Backup // nil when no backup block
	TLS       TLS
	API       *API // nil when no api block: `pgha watch` serves nothing

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
	// Host is the Docker engine: "unix:///var/run/docker.sock" or
	// "tcp://HOST:PORT" (an engine on another host, as DOCKER_HOST
	// writes it); "" = DOCKER_HOST or the local socket.
	Host string
	// CAFile, CertFile and KeyFile are mutual TLS with a tcp:// engine
	// (absolute paths): the CA that signed the engine's certificate and
	// pgha's client certificate, which an engine run with --tlsverify
	// requires. They are Docker's ca.pem, cert.pem and key.pem (what
	// DOCKER_CERT_PATH holds). All three or none.
	CAFile, CertFile, KeyFile string
	// InsecureTCP accepts a tcp:// engine without TLS: whoever reaches
	// its port is root on its host, so a file must say so to use one.
	InsecureTCP bool
	// Bind is the address on the engine's host that node ports (and a
	// managed catalog's) are published on. Default "127.0.0.1" for a
	// local engine, the engine's IP for a tcp:// engine. pgha connects to
	// the nodes there (PublishedHost).
	Bind   string
	Prefix string // resource name prefix; default "pgha-<cluster>-"
}

// TCPHost is the host name or IP of a tcp:// engine (without brackets),
// "" when the engine is a local socket or DOCKER_HOST's.
func (d Docker) TCPHost() string {
	rest, ok := strings.CutPrefix(d.Host, "tcp://")
	if !ok {
		return ""
	}
	u, err := url.Parse("tcp://" + rest)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// PublishedHost is where pgha reaches a published port: Bind, or, when
// Bind is every address of the engine's host (0.0.0.0, ::), the tcp://
// engine's host name, else loopback. With a remote engine the ports are on
// that host, never on 127.0.0.1 of the host pgha runs on.
func (d Docker) PublishedHost() string {
	switch d.Bind {
	case "", "0.0.0.0", "::":
		if h := d.TCPHost(); h != "" {
			return h
		}
		return "127.0.0.1"
	}
	return d.Bind
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

// Replication is the streaming replication user, and whether commits
// wait for standbys.
type Replication struct {
	User     string // default "replicator"
	Password Secret // required
	// Synchronous is nil when replication is asynchronous (the default).
	Synchronous *Synchronous
}

// Synchronous is replication { synchronous { ... } }: a commit on the
// primary returns only once Standbys standbys have flushed it, and a
// failover promotes only a standby that was synchronous (the catalog
// records which were), so that no acknowledged commit is lost.
type Synchronous struct {
	// Standbys is how many standbys confirm each commit; default 1.
	Standbys int
	// Mode is "quorum" (default): any Standbys of the listed standbys
	// confirm (synchronous_standby_names = 'ANY n (...)'); or "priority":
	// the first Standbys connected in declaration order do ('FIRST n
	// (...)'), the others stand in when one of those is gone.
	Mode string
	// Strict: with fewer healthy standbys than Standbys, writes wait
	// (rather than go on unprotected). Not strict (the default), the
	// watcher relaxes the primary to asynchronous, records that, and
	// restores synchronous replication once enough standbys stream again.
	Strict bool

	DeclRange hcl.Range `json:"-"`
}

// SyncQuorum and SyncPriority are Synchronous.Mode's values.
const (
	SyncQuorum   = "quorum"
	SyncPriority = "priority"
)

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

// Agent declares that every node's host runs `pgha agent -node NAME`,
// which holds the node's member lease in the authority (the catalog) and
// stops the node's primary itself when its host can no longer reach the
// authority: an isolated primary stops acknowledging writes within
// SelfFence, whoever else can or cannot reach it.
//
// The arithmetic, with ttl = SelfFence (LeaseTTL): the agent renews its
// lease every ttl/3 and declares it Lost ttl - ttl/10 after it *sent*
// the last renewal the store acknowledged; it then stops its primary at
// once (an immediate stop: no checkpoint, the backends are gone in
// milliseconds). The store expires the lease ttl after it *received*
// that renewal, which is later. So, counted from a cut at T (the last
// good renewal was sent before T):
//
//	agent fences      ≤ T + ttl - ttl/10   (+ the immediate stop)
//	lease expires     > fence time + ttl/10
//	watcher promotes  only after the lease is gone, when its runtime
//	                  cannot reach the node to fence it itself
//
// The immediate stop must fit in the ttl/10 margin (a few hundred ms for
// the default; 50 ms measured locally), and the clocks need not agree:
// each side counts its own interval. A watcher whose runtime reaches the
// node fences it as before and need not wait.
type Agent struct {
	// SelfFence is the bound: an agent that cannot renew its member
	// lease stops its primary within it. Default 5s; at least 1s, so
	// that a renewal every third of it rides out a slow store.
	SelfFence time.Duration

	DeclRange hcl.Range `json:"-"`
}

// LeaseTTL is the member lease's ttl in the store: SelfFence (see Agent).
func (a *Agent) LeaseTTL() time.Duration { return a.SelfFence }

// FenceMargin is how long before the store may expire the lease the agent
// gives up on it: the time its immediate stop has.
func (a *Agent) FenceMargin() time.Duration { return a.SelfFence / 10 }

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

// Authority is an etcd cluster holding pgha's authority (issue 14): the
// cluster lock, the watchers' leader lease, the node agents' member
// leases and the cluster record with its synchronous set. A consensus
// store keeps them through the loss of any one of its members, which one
// Redis cannot. Backups and history stay in the catalog (see
// providers/etcd).
type Authority struct {
	Kind      string   // "etcd"
	Endpoints []string // client URLs, http:// or https://
	Username  string
	Password  Secret
	// CAFile, CertFile and KeyFile are the etcd cluster's CA and pgha's
	// client certificate (absolute paths): an etcd pgha does not run has a
	// CA of its own, not pgha's. CAFile "" with https endpoints: the
	// system's roots.
	CAFile, CertFile, KeyFile string
	// TTL is the lease of the lock, the leader and the members (default
	// 9 s, at least 2 s: etcd's shortest lease with its default timings).
	TTL time.Duration

	DeclRange hcl.Range `json:"-"`
}

// HasAuthority: the file declares somewhere to keep the lock, the leader
// lease and the record (a catalog or an authority).
func (c *Cluster) HasAuthority() bool { return c.Catalog != nil || c.Authority != nil }

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
