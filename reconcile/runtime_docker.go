package reconcile

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/providers/docker"
	"github.com/pgha/pgha/state"
)

// dockerRuntime runs each node in a container with its data on a named
// volume; providers/docker drives PostgreSQL inside it.
type dockerRuntime struct {
	c  *config.Cluster
	rt *docker.Runtime

	// asides is the nodes' set-aside directories as last listed, for
	// quick observations (see Observe): one read, under the key "".
	asides reused[map[string][]state.AsideDir]
}

func (d *dockerRuntime) forgetReused() { d.asides.forget() }

func newDockerRuntime(c *config.Cluster) (*dockerRuntime, error) {
	d := c.Runtime.Docker
	rt, err := docker.New(docker.Options{Host: d.Host, CAFile: d.CAFile, CertFile: d.CertFile, KeyFile: d.KeyFile,
		Cluster: c.Name, Prefix: d.Prefix, Network: d.Network, Image: d.Image, RedisImage: d.RedisImage, Bind: d.Bind})
	if err != nil {
		return nil, err
	}
	return &dockerRuntime{c: c, rt: rt}, nil
}

func (d *dockerRuntime) Close() { _ = d.rt.Close() }

// dockerNode is n's container as the provider names it.
func dockerNode(n *config.Node) docker.Node { return docker.Node{Name: n.Name, Port: n.Port} }

func (d *dockerRuntime) Observe(ctx context.Context, s *state.Cluster, pg func(*config.Node, *state.Node), o ObserveOptions) {
	s.Network = &state.Network{Name: d.c.Runtime.Docker.Network}
	cached, fresh := d.asides.get("", time.Now())
	reuse := o.Quick && !o.NoAside && fresh
	listed := time.Now()
	obs, err := d.rt.ObserveNodes(ctx, s.Nodes, func(n *state.Node) { pg(d.c.Node(n.Name), n) }, docker.ObserveOptions{Quick: o.Quick, NoAside: o.NoAside || reuse})
	switch {
	case err != nil || o.NoAside:
	case reuse:
		for _, n := range s.Nodes {
			if n.Reachable {
				n.Aside = cached[n.Name]
			}
		}
	default:
		// Listed for every node that answered (the others' were not,
		// and are not kept).
		m := map[string][]state.AsideDir{}
		for _, n := range s.Nodes {
			if n.Reachable {
				m[n.Name] = n.Aside
			}
		}
		d.asides.put("", m, listed)
	}
	if err != nil {
		// PostgreSQL answers at its published port whatever the engine's
		// API does: ask it all the same, so that an engine that cannot be
		// listed (a refused certificate, its API port cut off from a
		// remote engine) leaves the nodes' roles known, and a watcher
		// does not take running nodes for lost ones.
		s.RuntimeError = err.Error()
		var wg sync.WaitGroup
		for _, n := range s.Nodes {
			n.RuntimeError = err.Error()
			wg.Add(1)
			go func() {
				defer wg.Done()
				pg(d.c.Node(n.Name), n)
				if n.Reachable {
					n.Running, n.Initialized, n.StandbySignal = true, true, n.InRecovery
				}
			}()
		}
		wg.Wait()
		return
	}
	s.Network.Exists = obs.Network
	s.Catalog.DirExists = obs.CatalogVolume
	s.Undeclared = append(s.Undeclared, obs.Undeclared...)
}

func (d *dockerRuntime) CreateNode(ctx context.Context, n *config.Node) error {
	return d.rt.CreateNode(ctx, dockerNode(n))
}

// Prepare recreates a removed or stopped container around the node's volume.
func (d *dockerRuntime) Prepare(ctx context.Context, n *config.Node) error {
	return d.rt.CreateNode(ctx, dockerNode(n))
}

func (d *dockerRuntime) InitDB(ctx context.Context, n *config.Node) error {
	if err := d.rt.InitDB(ctx, dockerNode(n), d.c.Postgres.Superuser, d.c.Postgres.Password.Reveal()); err != nil {
		return err
	}
	return d.mark(ctx, n)
}

// mark writes pgha's marker into n's data directory after initdb, a
// clone, a rewind or a restore, so that pgha may later delete it.
func (d *dockerRuntime) mark(ctx context.Context, n *config.Node) error {
	return d.rt.WriteMarker(ctx, dockerNode(n), docker.Marker{Cluster: d.c.Name, Node: n.Name})
}

func (d *dockerRuntime) Configure(ctx context.Context, n *config.Node, settings map[string]string, hba []string) error {
	return d.rt.Configure(ctx, dockerNode(n), settings, hba)
}

func (d *dockerRuntime) SetStandby(ctx context.Context, n *config.Node, on bool) error {
	return d.rt.SetStandby(ctx, dockerNode(n), on)
}

func (d *dockerRuntime) WritePassfile(ctx context.Context, n *config.Node) error {
	r := d.c.Replication
	return d.rt.WritePassfile(ctx, dockerNode(n), d.c.PassfilePath(), []docker.PassEntry{{User: r.User, Password: r.Password.Reveal()}})
}

func (d *dockerRuntime) Start(ctx context.Context, n *config.Node) error {
	return d.rt.Start(ctx, dockerNode(n), d.c.LogFile(n))
}

// ConfigureAndStart installs n's TLS files, pgha.conf and pg_hba.conf,
// writes or removes standby.signal and starts the server, in one exec
// (configStarter).
func (d *dockerRuntime) ConfigureAndStart(ctx context.Context, n *config.Node, tls *NodeTLS, settings map[string]string, hba []string, standby bool) error {
	o := docker.StartSpec{LogFile: d.c.LogFile(n), Settings: settings, HBA: hba, Standby: standby}
	if tls != nil {
		f := d.c.NodeTLS(n)
		o.Files = map[string][]byte{f.Cert: tls.Cert, f.Key: tls.Key, f.CA: tls.CA}
	}
	return d.rt.ConfigureAndStart(ctx, dockerNode(n), o)
}

func (d *dockerRuntime) Stop(ctx context.Context, n *config.Node, mode string) error {
	return d.rt.Stop(ctx, dockerNode(n), mode)
}

func (d *dockerRuntime) Restart(ctx context.Context, n *config.Node) error {
	return d.rt.Restart(ctx, dockerNode(n), d.c.LogFile(n))
}

func (d *dockerRuntime) Clone(ctx context.Context, n, primary *config.Node) error {
	if err := d.rt.CreateNode(ctx, dockerNode(n)); err != nil {
		return err
	}
	if err := d.WritePassfile(ctx, n); err != nil {
		return err
	}
	host, port := d.c.PeerEndpoint(primary)
	if err := d.rt.Clone(ctx, dockerNode(n), docker.CloneSource{Host: host, Port: port, User: d.c.Replication.User,
		Slot: n.Slot, Passfile: d.c.PassfilePath(), AppName: n.Name, Env: d.c.LibpqTLS(n)}); err != nil {
		return err
	}
	return d.mark(ctx, n)
}

func (d *dockerRuntime) Destroy(ctx context.Context, n *config.Node, keepData bool) error {
	return d.rt.Destroy(ctx, dockerNode(n), keepData)
}

// Replace recreates n's container from the configured image and network,
// keeping its volume (its data); another PostgreSQL major is refused.
func (d *dockerRuntime) Replace(ctx context.Context, n *config.Node) error {
	return d.rt.Replace(ctx, dockerNode(n), d.c.LogFile(n))
}

func (d *dockerRuntime) StartCatalog(ctx context.Context) error {
	cat := d.c.Catalog
	o := docker.RedisOptions{Addr: cat.Address, Password: cat.Password.Reveal()}
	t, err := redisTLS(d.c)
	if err != nil {
		return fmt.Errorf("start the managed catalog: %w", err)
	}
	if t != nil {
		f := d.c.RedisTLS()
		o.TLS = &docker.RedisTLS{Cert: t.Cert, Key: t.Key, CA: t.CA, Files: pgconf.RedisTLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA}}
	}
	return d.rt.StartRedis(ctx, o)
}

// RestartCatalog stops redis-server in its container (it writes its
// appendonly file) and starts it with a fresh redis.conf.
func (d *dockerRuntime) RestartCatalog(ctx context.Context) error {
	if err := d.rt.StopRedis(ctx); err != nil {
		return err
	}
	return d.StartCatalog(ctx)
}

func (d *dockerRuntime) DestroyCatalog(ctx context.Context, keepData bool) error {
	return d.rt.RemoveRedis(ctx, keepData)
}

func (d *dockerRuntime) ControlData(ctx context.Context, n *config.Node) (map[string]string, error) {
	return d.rt.ControlData(ctx, dockerNode(n))
}

func (d *dockerRuntime) ForkFacts(ctx context.Context, n *config.Node, probes []string) (string, error) {
	return d.rt.ForkFacts(ctx, dockerNode(n), probes)
}

// Rewind connects pg_rewind to source as the superuser (through a
// short-lived passfile in the node's volume, never a command line).
func (d *dockerRuntime) Rewind(ctx context.Context, n, source *config.Node) (string, error) {
	host, port := d.c.PeerEndpoint(source)
	su := d.c.Postgres
	// pg_rewind copied the source's marker: Rewind writes n's own in its
	// exec, as mark would in one more.
	return d.rt.Rewind(ctx, dockerNode(n), docker.SQLSource{Host: host, Port: port, User: su.Superuser, Password: su.Password.Reveal(), Env: d.c.LibpqTLS(n)},
		&docker.Marker{Cluster: d.c.Name, Node: n.Name})
}

// InstallTLS copies n's certificate, key and the CA into its volume,
// outside PGDATA, for the image's postgres user.
func (d *dockerRuntime) InstallTLS(ctx context.Context, n *config.Node, cert, key, ca []byte) error {
	f := d.c.NodeTLS(n)
	return d.rt.WritePrivateFiles(ctx, dockerNode(n), map[string][]byte{f.Cert: cert, f.Key: key, f.CA: ca})
}

// InstalledTLS reads n's installed certificate and CA (nil when absent
// or when the container does not run).
func (d *dockerRuntime) InstalledTLS(ctx context.Context, n *config.Node) (cert, ca []byte, err error) {
	f := d.c.NodeTLS(n)
	files, err := d.rt.ReadFiles(ctx, dockerNode(n), f.Cert, f.CA)
	if err != nil {
		return nil, nil, err
	}
	return files[0], files[1], nil
}

// Reload signals the server in n's container (pg_ctl reload).
func (d *dockerRuntime) Reload(ctx context.Context, n *config.Node) error {
	return d.rt.Reload(ctx, dockerNode(n))
}

func (d *dockerRuntime) MoveAside(ctx context.Context, n *config.Node, stamp string) (string, error) {
	if err := d.rt.Stop(ctx, dockerNode(n), "fast"); err != nil {
		return "", err
	}
	return d.rt.MoveAside(ctx, dockerNode(n), stamp)
}

func (d *dockerRuntime) RemoveAside(ctx context.Context, n *config.Node, path string) error {
	return d.rt.RemoveAside(ctx, dockerNode(n), path)
}

// MarkFenced writes standby.signal when the node's container runs. A
// stopped or killed container restarts with its keeper only (pgha starts
// PostgreSQL by exec), so it cannot come back as a primary by itself; not
// starting it keeps a failover fast.
//
// One exec in the usual case (the container runs): standby.signal is
// written, and only when that fails is the engine asked whether there was
// a running container to write it in.
func (d *dockerRuntime) MarkFenced(ctx context.Context, n *config.Node) error {
	err := d.rt.SetStandby(ctx, dockerNode(n), true)
	if err == nil {
		return nil
	}
	if running, rerr := d.rt.Engine().ContainerRunning(ctx, n.Name); rerr == nil && !running {
		return nil // no running container to exec in
	}
	return err
}

// BaseBackup streams a base backup of n, taken inside its container as
// the replication user, through the address pg_hba.conf lets replication
// in from.
func (d *dockerRuntime) BaseBackup(ctx context.Context, n *config.Node, w io.Writer) (string, error) {
	if err := d.WritePassfile(ctx, n); err != nil {
		return "", err
	}
	host, port := d.c.PeerEndpoint(n)
	return d.rt.BaseBackup(ctx, dockerNode(n), docker.CloneSource{Host: host, Port: port, User: d.c.Replication.User,
		Passfile: d.c.PassfilePath(), Env: d.c.LibpqTLS(n)}, w)
}

// DumpAll runs the image's pg_dumpall inside n's container as the
// superuser.
func (d *dockerRuntime) DumpAll(ctx context.Context, n *config.Node, w io.Writer) error {
	host, port := d.c.PeerEndpoint(n)
	su := d.c.Postgres
	return d.rt.DumpAll(ctx, dockerNode(n), docker.SQLSource{Host: host, Port: port, User: su.Superuser, Password: su.Password.Reveal(), Env: d.c.LibpqTLS(n)}, w)
}
