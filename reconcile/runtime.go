package reconcile

import (
	"context"
	"io"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// Runtime is where nodes run: local processes or containers. The action
// executors are written once against it; each runtime adapts cluster.hcl's
// nodes to its provider.
type Runtime interface {
	// Observe fills the runtime facts of every node in s (data exists,
	// initialised, running) and of the managed catalog, calling pg for
	// each node whose server may be up to fill PostgreSQL's facts. o.Quick
	// lets it skip what is slow to find out (ObserveOptions).
	Observe(ctx context.Context, s *state.Cluster, pg func(*config.Node, *state.Node), o ObserveOptions)
	CreateNode(ctx context.Context, n *config.Node) error
	// Prepare makes an existing node's runtime ready to be configured and
	// started (its container, on Docker); it never touches data.
	Prepare(ctx context.Context, n *config.Node) error
	InitDB(ctx context.Context, n *config.Node) error
	Configure(ctx context.Context, n *config.Node, settings map[string]string, hba []string) error
	SetStandby(ctx context.Context, n *config.Node, on bool) error
	// WritePassfile writes the replication credentials n reads as a standby.
	WritePassfile(ctx context.Context, n *config.Node) error
	Start(ctx context.Context, n *config.Node) error
	Stop(ctx context.Context, n *config.Node, mode string) error
	Restart(ctx context.Context, n *config.Node) error
	// Clone copies primary into n's (empty) data directory through n's slot.
	Clone(ctx context.Context, n, primary *config.Node) error
	// MarkFenced makes sure a restart of n cannot bring back a primary
	// (standby.signal). A runtime where a restarted node does not start
	// PostgreSQL by itself may skip it when the node is down.
	MarkFenced(ctx context.Context, n *config.Node) error
	// BaseBackup streams a tar base backup of n (WAL included) to w.
	BaseBackup(ctx context.Context, n *config.Node, w io.Writer) (string, error)
	// DumpAll streams pg_dumpall of n, as the superuser, to w.
	DumpAll(ctx context.Context, n *config.Node, w io.Writer) error
	// ControlData is pg_controldata's view of n's data directory.
	ControlData(ctx context.Context, n *config.Node) (map[string]string, error)
	// ForkFacts runs pgdata.ForkScript on n's stopped data directory with
	// probes (pgdata.ForkProbes): what decides whether a former primary
	// can follow a source without pg_rewind.
	ForkFacts(ctx context.Context, n *config.Node, probes []string) (string, error)
	// Rewind runs pg_rewind on n (stopped) against source, which runs.
	Rewind(ctx context.Context, n, source *config.Node) (string, error)
	// MoveAside stops n and renames its data directory to a set-aside
	// sibling named with stamp (same filesystem; inside the node's volume
	// on Docker), leaving an empty one for a re-clone. It returns where the
	// data went, "" when there was none. Nothing is deleted.
	MoveAside(ctx context.Context, n *config.Node, stamp string) (string, error)
	// RemoveAside deletes one of n's set-aside data directories (a
	// data.remove action), refusing any path not named as one.
	RemoveAside(ctx context.Context, n *config.Node, path string) error
	// Destroy removes n and, unless keepData, its data.
	Destroy(ctx context.Context, n *config.Node, keepData bool) error
	// Replace recreates a node's container (image or network changed),
	// keeping its data. Only the docker runtime plans it.
	Replace(ctx context.Context, n *config.Node) error
	// InstallTLS writes n's certificate, key and the cluster CA where
	// config.Cluster.NodeTLS says, readable by its server only.
	InstallTLS(ctx context.Context, n *config.Node, cert, key, ca []byte) error
	// InstalledTLS reads the installed certificate and CA back (nil when
	// absent).
	InstalledTLS(ctx context.Context, n *config.Node) (cert, ca []byte, err error)
	// Reload signals n's running server to re-read its configuration.
	Reload(ctx context.Context, n *config.Node) error
	StartCatalog(ctx context.Context) error
	// RestartCatalog restarts the managed Redis with a freshly written
	// configuration (a password added).
	RestartCatalog(ctx context.Context) error
	DestroyCatalog(ctx context.Context, keepData bool) error
	Close()
}

// OpenRuntime returns the runtime cluster.hcl asks for.
func OpenRuntime(c *config.Cluster) (Runtime, error) {
	if c.IsDocker() {
		return newDockerRuntime(c)
	}
	return newLocalRuntime(c)
}
