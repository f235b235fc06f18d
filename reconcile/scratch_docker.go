package reconcile

import (
	"context"
	"fmt"
	"io"
	"maps"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/providers/docker"
	"github.com/pgha/pgha/state"
)

// startScratch restores a chain into a throwaway container of the
// cluster's image, published on a free loopback port (docker.Scratch):
// each backup's tar streams from the repository into the container, and
// a PostgreSQL 17 block-level chain is combined there by the image's
// pg_combinebackup. Stop removes the container and its data.
func (d *dockerRuntime) startScratch(ctx context.Context, repo backup.Store, chain []state.Backup, wal *archivedWAL, check bool, out io.Writer) (int, func(), func() string, error) {
	none := func() string { return "" }
	layout, err := backup.Layout(chain)
	if err != nil {
		return 0, nil, none, err
	}
	port, err := freePort()
	if err != nil {
		return 0, nil, none, err
	}
	bind := "127.0.0.1"
	if d.c.Runtime.Docker.TCPHost() != "" {
		bind = d.c.Runtime.Docker.Bind // the engine's loopback is not pgha's
	}
	s, err := d.rt.StartScratch(ctx, bind, port)
	if err != nil {
		return 0, nil, none, err
	}
	fail := func(err error, log string) (int, func(), func() string, error) {
		s.Remove()
		return 0, nil, none, fmt.Errorf("%w%s", err, withLog([]byte(log)))
	}
	if layout == backup.LayoutLogical {
		if err := d.loadLogical(ctx, s, repo, chain[0], out); err != nil {
			return fail(err, s.LogTail())
		}
		return port, s.Remove, s.LogTail, nil
	}
	ch := restoreChain(repo, chain, layout, out)
	if wal != nil {
		if ch.Combine {
			// pg_combinebackup would take the WAL for one more part.
			return fail(fmt.Errorf("replaying the WAL archive after a PostgreSQL 17 block-level chain is not done on docker yet"), "")
		}
		ch.Parts = append(ch.Parts, docker.ChainPart{ID: "the archived WAL", Open: wal.open})
	}
	if err := s.LoadChain(ctx, ch, check, out); err != nil {
		return fail(err, "")
	}
	// The node's own pgha.conf and pg_hba.conf came with the backup (port
	// 5432, every address, passwords over TCP); what changes is appended
	// to postgresql.auto.conf, which is read last. TLS is off: the node's
	// certificates are not in the scratch container.
	settings := map[string]string{"primary_conninfo": "", "primary_slot_name": "", "archive_mode": "off", "ssl": "off"}
	maps.Copy(settings, recoveryFor(chain, wal))
	conf, err := pgconf.Settings(settings)
	if err != nil {
		return fail(err, "")
	}
	if err := s.Recover(ctx, conf, layout == backup.LayoutWAL || wal != nil); err != nil {
		return fail(err, "")
	}
	if err := s.Start(ctx); err != nil {
		return fail(fmt.Errorf("the restored data directory does not start: %w", err), s.LogTail())
	}
	return port, s.Remove, s.LogTail, nil
}

// scratchHost is where pgha dials a scratch instance: the engine's host
// for a tcp:// engine, whose ports are published there, else loopback.
func (d *dockerRuntime) scratchHost() string {
	if d.c.Runtime.Docker.TCPHost() != "" {
		return d.c.Runtime.Docker.PublishedHost()
	}
	return "127.0.0.1"
}

// restoreChain is chain as streams from the repository, with a meter
// that prints how far the copy is.
func restoreChain(repo backup.Store, chain []state.Backup, layout string, out io.Writer) docker.Chain {
	ch := docker.Chain{Combine: layout == backup.LayoutCombine}
	var total int64
	for _, b := range chain {
		total += b.DatabaseBytes
		p := docker.ChainPart{ID: b.ID, Open: func() (io.ReadCloser, error) { return backup.Open(repo, b) }}
		if b.ServerManifest != "" {
			p.Manifest = func() ([]byte, error) { return backup.ServerManifest(repo, b) }
		}
		ch.Parts = append(ch.Parts, p)
	}
	ch.Progress = newMeter(out, total)
	return ch
}

// loadLogical makes a fresh cluster in the scratch container, starts it
// and streams a pg_dumpall script into psql there. As on the local
// runtime, the superuser's CREATE ROLE, which must fail in a fresh
// cluster, is left out, and psql stops at any other error.
func (d *dockerRuntime) loadLogical(ctx context.Context, s *docker.Scratch, repo backup.Store, b state.Backup, out io.Writer) error {
	su := d.c.Postgres
	if err := s.InitDB(ctx, su.Superuser, su.Password.Reveal()); err != nil {
		return err
	}
	rc, err := backup.Open(repo, b)
	if err != nil {
		return err
	}
	defer rc.Close()
	r := backup.ForFreshCluster(io.TeeReader(rc, newMeter(out, 0)), su.Superuser)
	if err := s.LoadSQL(ctx, docker.SQLSource{Host: "127.0.0.1", Port: docker.Port, User: su.Superuser, Password: su.Password.Reveal()}, r); err != nil {
		return fmt.Errorf("load %s (backup %s): %w", backup.Where(repo, b.Path), b.ID, err)
	}
	return nil
}

func (d *dockerRuntime) asideDir(_ *config.Node, stamp string) string {
	return pgdata.BeforeRestorePath(docker.PGData, stamp)
}

// restoreNode works inside the node's volume: the old data directory is
// renamed there, and the chain streams in through the engine.
//
// The archived WAL of a point-in-time restore is one more part, a tar of
// pg_wal/ entries extracted over the full like a WAL backup's.
func (d *dockerRuntime) restoreNode(ctx context.Context, n *config.Node, repo backup.Store, chain []state.Backup, wal *archivedWAL, aside string, out io.Writer) (map[string]string, error) {
	layout, err := backup.Layout(chain)
	if err != nil {
		return nil, err
	}
	ch := restoreChain(repo, chain, layout, out)
	if wal != nil {
		if ch.Combine {
			return nil, fmt.Errorf("a point-in-time restore starts from a full alone")
		}
		ch.Parts = append(ch.Parts, docker.ChainPart{ID: "the archived WAL", Open: wal.open})
	}
	if err := d.rt.RestoreNode(ctx, dockerNode(n), aside, ch, out); err != nil {
		return nil, err
	}
	return recoveryFor(chain, wal), d.mark(ctx, n)
}
