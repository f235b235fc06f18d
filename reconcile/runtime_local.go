package reconcile

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/providers/local"
	"github.com/pgha/pgha/state"
)

// localRuntime runs nodes as processes of this machine.
type localRuntime struct {
	c  *config.Cluster
	rt *local.Runtime
}

func newLocalRuntime(c *config.Cluster) (*localRuntime, error) {
	rt, err := local.New(local.Options{BinDir: c.Runtime.BinDir, RunAs: c.Runtime.RunAs})
	if err != nil {
		return nil, fmt.Errorf("local runtime: %w", err)
	}
	return &localRuntime{c: c, rt: rt}, nil
}

func (l *localRuntime) Close() {}

// Observe is the same with o.Quick: nothing here is slow (a stat and a
// kill -0 per node).
func (l *localRuntime) Observe(ctx context.Context, s *state.Cluster, pg func(*config.Node, *state.Node), _ ObserveOptions) {
	obs := l.rt.ObserveNodes(s.Nodes, l.c.Runtime.DataDir, l.c.Name, func(n *state.Node) {
		cn := l.c.Node(n.Name)
		if cn == nil { // undeclared: reached where its postmaster.pid says
			cn = &config.Node{Name: n.Name, Host: n.Host, Port: n.Port, DataDir: n.DataDir}
		}
		pg(cn, n)
	})
	s.Undeclared = append(s.Undeclared, obs.Undeclared...)
	if cat := l.c.Catalog; cat != nil && cat.Managed {
		if _, err := os.Stat(cat.DataDir); err == nil {
			s.Catalog.DirExists = true
			if err := local.CheckRedisOwned(cat.DataDir); err != nil {
				s.Catalog.DirForeign = err.Error()
			}
		}
	}
}

func (l *localRuntime) CreateNode(_ context.Context, n *config.Node) error {
	return l.rt.CreateDataDir(n.DataDir)
}

func (l *localRuntime) Prepare(context.Context, *config.Node) error { return nil }

func (l *localRuntime) InitDB(ctx context.Context, n *config.Node) error {
	if err := l.rt.InitDB(ctx, n.DataDir, l.c.Postgres.Superuser, l.c.Postgres.Password.Reveal()); err != nil {
		return err
	}
	return l.mark(n)
}

// mark writes pgha's marker into n's data directory, so that pgha may
// later delete it (local.CheckOwned); it follows every initdb, clone,
// rewind and restore, which leave a directory without it or with the
// source's.
func (l *localRuntime) mark(n *config.Node) error {
	return l.rt.WriteMarker(n.DataDir, local.Marker{Cluster: l.c.Name, Node: n.Name})
}

func (l *localRuntime) Configure(_ context.Context, n *config.Node, settings map[string]string, hba []string) error {
	return l.rt.Configure(n.DataDir, settings, hba)
}

func (l *localRuntime) SetStandby(_ context.Context, n *config.Node, on bool) error {
	return l.rt.SetStandby(n.DataDir, on)
}

func (l *localRuntime) WritePassfile(context.Context, *config.Node) error {
	r := l.c.Replication
	return l.rt.WritePassfile(l.c.PassfilePath(), []local.PassEntry{{User: r.User, Password: r.Password.Reveal()}})
}

func (l *localRuntime) Start(ctx context.Context, n *config.Node) error {
	return l.rt.Start(ctx, n.DataDir, l.c.LogFile(n))
}

func (l *localRuntime) Stop(ctx context.Context, n *config.Node, mode string) error {
	return l.rt.Stop(ctx, n.DataDir, mode)
}

func (l *localRuntime) Restart(ctx context.Context, n *config.Node) error {
	return l.rt.Restart(ctx, n.DataDir, l.c.LogFile(n))
}

func (l *localRuntime) Clone(ctx context.Context, n, primary *config.Node) error {
	if err := l.WritePassfile(ctx, n); err != nil {
		return err
	}
	host, port := l.c.PeerEndpoint(primary)
	if err := l.rt.Clone(ctx, n.DataDir, local.CloneSource{Host: host, Port: port, User: l.c.Replication.User,
		Slot: n.Slot, Passfile: l.c.PassfilePath(), AppName: n.Name, Env: l.c.LibpqTLS(n)}); err != nil {
		return err
	}
	return l.mark(n)
}

func (l *localRuntime) Destroy(ctx context.Context, n *config.Node, _ bool) error {
	if err := l.rt.Stop(ctx, n.DataDir, "fast"); err != nil {
		return err
	}
	if _, err := os.Stat(n.DataDir); os.IsNotExist(err) {
		return nil
	}
	return l.rt.RemoveDataDir(n.DataDir, l.c.Name)
}

func (l *localRuntime) Replace(context.Context, *config.Node) error {
	return fmt.Errorf("the local runtime has no containers to replace")
}

func (l *localRuntime) redisOptions() local.RedisOptions {
	c := l.c.Catalog
	return local.RedisOptions{Addr: c.Address, Password: c.Password.Reveal(), Dir: c.DataDir}
}

// startOptions are redisOptions with the TLS files the server reads.
func (l *localRuntime) startOptions() (local.RedisOptions, error) {
	o := l.redisOptions()
	t, err := redisTLS(l.c)
	if err != nil {
		return o, fmt.Errorf("start the managed catalog: %w", err)
	}
	o.TLS = t
	return o, nil
}

func (l *localRuntime) StartCatalog(ctx context.Context) error {
	o, err := l.startOptions()
	if err != nil {
		return err
	}
	return l.rt.StartRedis(ctx, o)
}

// RestartCatalog stops the managed redis-server (it flushes its appendonly
// file) and starts it with a fresh redis.conf.
func (l *localRuntime) RestartCatalog(ctx context.Context) error {
	if err := l.rt.StopRedis(ctx, l.redisOptions()); err != nil {
		return err
	}
	return l.StartCatalog(ctx)
}

func (l *localRuntime) DestroyCatalog(ctx context.Context, _ bool) error {
	if err := l.rt.StopRedis(ctx, l.redisOptions()); err != nil {
		return err
	}
	return l.rt.RemoveRedisDir(l.c.Catalog.DataDir)
}

func (l *localRuntime) ControlData(ctx context.Context, n *config.Node) (map[string]string, error) {
	return l.rt.ControlData(ctx, n.DataDir)
}

func (l *localRuntime) ForkFacts(ctx context.Context, n *config.Node, probes []string) (string, error) {
	return l.rt.ForkFacts(ctx, n.DataDir, probes)
}

// Rewind connects pg_rewind to source as the superuser through a
// short-lived passfile, never a command line.
func (l *localRuntime) Rewind(ctx context.Context, n, source *config.Node) (string, error) {
	pf := filepath.Join(filepath.Dir(l.c.PassfilePath()), "rewind-"+n.Name)
	su := l.c.Postgres
	if err := l.rt.WritePassfile(pf, []local.PassEntry{{User: su.Superuser, Password: su.Password.Reveal()}}); err != nil {
		return "", err
	}
	defer os.Remove(pf)
	host, port := l.c.PeerEndpoint(source)
	report, err := l.rt.Rewind(ctx, n.DataDir, local.RewindSource{Host: host, Port: port, User: su.Superuser, Passfile: pf, Env: l.c.LibpqTLS(n)})
	if err != nil {
		return report, err
	}
	return report, l.mark(n) // pg_rewind copied the source's marker
}

// InstallTLS puts n's certificate, key and the CA where its server and
// its libpq clients read them, 0600 and owned by run_as.
func (l *localRuntime) InstallTLS(_ context.Context, n *config.Node, cert, key, ca []byte) error {
	f := l.c.NodeTLS(n)
	return l.rt.WritePrivateFiles(map[string][]byte{f.Cert: cert, f.Key: key, f.CA: ca})
}

// InstalledTLS reads back what InstallTLS wrote (nil when absent).
func (l *localRuntime) InstalledTLS(_ context.Context, n *config.Node) (cert, ca []byte, err error) {
	f := l.c.NodeTLS(n)
	cert, err = os.ReadFile(f.Cert)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	ca, err = os.ReadFile(f.CA)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	return cert, ca, nil
}

// Reload signals n's server to re-read its configuration and TLS files
// (pg_ctl reload): it works when pgha cannot log in, e.g. because the
// server presents a certificate pgha does not trust.
func (l *localRuntime) Reload(ctx context.Context, n *config.Node) error {
	return l.rt.Reload(ctx, n.DataDir)
}

func (l *localRuntime) MoveAside(ctx context.Context, n *config.Node, stamp string) (string, error) {
	if err := l.rt.Stop(ctx, n.DataDir, "fast"); err != nil {
		return "", err
	}
	return l.rt.MoveAside(n.DataDir, stamp)
}

func (l *localRuntime) RemoveAside(_ context.Context, n *config.Node, path string) error {
	return l.rt.RemoveAside(n.DataDir, path, l.c.Name)
}

// MarkFenced writes standby.signal: a supervisor or an operator restarting
// the old primary gets a standby, not a second primary.
func (l *localRuntime) MarkFenced(_ context.Context, n *config.Node) error {
	return l.rt.SetStandby(n.DataDir, true)
}

// BaseBackup streams a base backup of n as the replication user.
func (l *localRuntime) BaseBackup(ctx context.Context, n *config.Node, w io.Writer) (string, error) {
	if err := l.WritePassfile(ctx, n); err != nil {
		return "", err
	}
	host, port := l.c.AdminEndpoint(n)
	return l.rt.BaseBackup(ctx, local.CloneSource{Host: host, Port: port, User: l.c.Replication.User, Passfile: l.c.PassfilePath(), Env: l.c.LibpqTLS(n)}, w)
}

// superPassfile writes the superuser's credentials where RunAs reads them
// (beside the replication passfile, 0600) and returns its path and a
// function that removes it: pg_dumpall and psql never see a password on
// their command line or in their environment.
func (l *localRuntime) superPassfile() (string, func(), error) {
	path := filepath.Join(filepath.Dir(l.c.PassfilePath()), "pgpass-superuser")
	err := l.rt.WritePassfile(path, []local.PassEntry{{User: l.c.Postgres.Superuser, Password: l.c.Postgres.Password.Reveal()}})
	return path, func() { os.Remove(path) }, err
}

// DumpAll runs pg_dumpall next to pgha against n.
func (l *localRuntime) DumpAll(ctx context.Context, n *config.Node, w io.Writer) error {
	pf, done, err := l.superPassfile()
	if err != nil {
		return err
	}
	defer done()
	host, port := l.c.AdminEndpoint(n)
	return l.rt.DumpAll(ctx, local.SQLSource{Host: host, Port: port, User: l.c.Postgres.Superuser, Passfile: pf, Env: l.c.LibpqTLS(n)}, w)
}
