package reconcile

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/providers/docker"
	"github.com/pgha/pgha/state"
)

// startScratch restores a chain into a throwaway container of the
// cluster's image, published on a free loopback port. Each backup's tar
// streams from the repository into the container (nothing is staged on
// the host, and no host directory is mounted, so a remote engine works
// too); a PostgreSQL 17 block-level chain is combined there by the
// image's pg_combinebackup. Stop removes the container and its data.
func (d *dockerRuntime) startScratch(ctx context.Context, repo string, chain []state.Backup, check bool, out io.Writer) (int, func(), func() string, error) {
	none := func() string { return "" }
	layout, err := backup.Layout(chain)
	if err != nil {
		return 0, nil, none, err
	}
	port, err := freePort()
	if err != nil {
		return 0, nil, none, err
	}
	node := fmt.Sprintf("restore-%d", port)
	if _, err := d.eng.EnsureNetwork(ctx); err != nil {
		return 0, nil, none, err
	}
	// A volume, not the container's layered filesystem: restoring writes
	// the database twice over (the parts, then the combined directory).
	root := "/var/lib/postgresql/pgha-restore"
	if err := d.eng.EnsureVolume(ctx, node); err != nil {
		return 0, nil, none, err
	}
	stop := func() {
		_ = d.eng.RemoveContainer(context.Background(), node)
		_ = d.eng.RemoveVolume(context.Background(), node)
	}
	err = d.eng.EnsureContainer(ctx, docker.Spec{Node: node, Role: "scratch", Image: d.c.Runtime.Docker.Image, Config: d.c.Runtime.Docker.Image,
		Mount: root, Port: config.DockerPort, Bind: "127.0.0.1", HostPort: port})
	if err != nil {
		stop()
		return 0, nil, none, err
	}
	data := root + "/data"
	logFile := root + "/postgresql.log"
	logf := func() string {
		s, _ := d.eng.Exec(context.Background(), node, pgUser, nil, nil, "tail", "-n", "40", logFile)
		return s
	}
	fail := func(err error) (int, func(), func() string, error) {
		stop()
		return 0, nil, none, err
	}
	if _, err := d.eng.Exec(ctx, node, "root", nil, nil, "sh", "-c", `mkdir -p "$0" && chown `+pgUser+`: "$0"`, root); err != nil {
		return fail(err)
	}
	pg := func(name string, args ...string) error {
		bin, err := d.eng.BinDir(ctx, node, d.c.Runtime.Docker.Image)
		if err != nil {
			return err
		}
		if o, err := d.eng.Exec(ctx, node, pgUser, nil, nil, append([]string{bin + "/" + name}, args...)...); err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, o)
		}
		return nil
	}
	if layout == backup.LayoutLogical {
		if err := d.loadLogical(ctx, node, repo, chain[0], root, pg, out); err != nil {
			log := logf()
			stop()
			return 0, nil, none, fmt.Errorf("%w%s", err, withLog([]byte(log)))
		}
		return port, stop, logf, nil
	}
	if err := d.loadChain(ctx, node, repo, chain, root, data, check, pg, out); err != nil {
		return fail(err)
	}
	// The node's own pgha.conf and pg_hba.conf came with the backup (port
	// 5432, every address, passwords over TCP); what changes is appended
	// to postgresql.auto.conf, which is read last.
	// A scratch instance is reached in plain text on its loopback port:
	// the node's certificates are not in the scratch container, and its
	// hostssl pg_hba.conf is replaced by one plain line.
	settings := map[string]string{"primary_conninfo": "", "primary_slot_name": "", "archive_mode": "off", "ssl": "off"}
	maps.Copy(settings, backup.RecoverySettings(chain))
	conf, err := pgconf.Settings(settings)
	if err != nil {
		return fail(err)
	}
	signal := "rm -f \"$0/recovery.signal\""
	if layout == backup.LayoutWAL {
		signal = "touch \"$0/recovery.signal\""
	}
	script := `set -e; rm -f "$0/standby.signal" "$0/postmaster.pid"; ` + signal + `; cat >> "$0/postgresql.auto.conf"; chmod 700 "$0"
printf 'local all all peer\nhost all all all scram-sha-256\n' > "$0/pg_hba.conf"`
	if _, err := d.eng.Exec(ctx, node, pgUser, nil, conf, "sh", "-c", script, data); err != nil {
		return fail(err)
	}
	if err := pg("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "120", "start"); err != nil {
		log := logf()
		stop()
		return 0, nil, none, fmt.Errorf("the restored data directory does not start: %w%s", err, withLog([]byte(log)))
	}
	return port, stop, logf, nil
}

// loadChain streams a chain into a container: the tars through the
// engine's archive endpoint into data (a WAL chain's segments over the
// full's pg_wal), or, for a PostgreSQL 17 block-level chain, each into its
// own directory under root, checked by pg_verifybackup when check is set,
// then combined into data by pg_combinebackup.
func (d *dockerRuntime) loadChain(ctx context.Context, node, repo string, chain []state.Backup, root, data string, check bool,
	pg func(string, ...string) error, out io.Writer) error {
	layout, err := backup.Layout(chain)
	if err != nil {
		return err
	}
	var total int64
	for _, b := range chain {
		total += b.DatabaseBytes
	}
	m := newMeter(out, total)
	began := time.Now()
	var parts []string
	partsDir := ""
	if layout == backup.LayoutCombine {
		// The parts go into a directory mktemp makes, fresh: nothing that
		// was in the volume before (a crashed restore's leftovers, a
		// symlink) is written into, and only this directory is removed.
		o, err := d.eng.Exec(ctx, node, pgUser, nil, nil, "mktemp", "-d", root+"/.restore-parts.XXXXXX")
		if err != nil {
			return fmt.Errorf("restore parts directory in %s: %w", d.eng.Name(node), err)
		}
		partsDir = strings.TrimSpace(o)
		if !strings.HasPrefix(partsDir, root+"/.restore-parts.") || strings.ContainsAny(partsDir, "\n ") {
			return fmt.Errorf("restore parts directory in %s: mktemp said %q", d.eng.Name(node), o)
		}
		defer d.eng.Exec(context.Background(), node, pgUser, nil, nil, "rm", "-rf", "--", partsDir)
	}
	for i, b := range chain {
		dir := data
		if layout == backup.LayoutCombine {
			dir = fmt.Sprintf("%s/part%d", partsDir, i)
			parts = append(parts, dir)
		}
		rc, err := backup.Open(repo, b)
		if err != nil {
			return fmt.Errorf("restore %s: %w", b.ID, err)
		}
		r := io.TeeReader(rc, m)
		if _, err := d.eng.Exec(ctx, node, pgUser, nil, nil, "mkdir", "-p", dir); err != nil {
			rc.Close()
			return err
		}
		err = d.eng.CopyIn(ctx, node, dir, r)
		rc.Close()
		if err != nil {
			return fmt.Errorf("restore %s into %s: %w", b.ID, d.eng.Name(node), err)
		}
	}
	// The archive names the backed-up server's owner; here it is the
	// image's postgres user.
	owned := parts
	if len(owned) == 0 {
		owned = []string{data}
	}
	if _, err := d.eng.Exec(ctx, node, "root", nil, nil, append([]string{"chown", "-R", pgUser + ":"}, owned...)...); err != nil {
		return err
	}
	fmt.Fprintf(out, "copied %s into %s in %s\n", bytesize.Format(m.n), d.eng.Name(node), time.Since(began).Round(time.Millisecond))
	// pg_combinebackup reads each backup's manifest from its directory,
	// pg_verifybackup the restored one's: as pg_basebackup -Fp leaves them.
	for i, b := range chain {
		if b.ServerManifest == "" || (layout != backup.LayoutCombine && i > 0) {
			continue
		}
		content, err := backup.ServerManifest(repo, b)
		if err != nil {
			return err
		}
		dir := data
		if layout == backup.LayoutCombine {
			dir = parts[i]
		}
		if err := d.write(ctx, node, pgUser, dir+"/"+backup.ServerManifestName, content); err != nil {
			return err
		}
	}
	if layout == backup.LayoutCombine {
		// Each part is checked as the server sent it; the combined
		// directory is pg_combinebackup's own work, not checked again.
		if check {
			for _, part := range parts {
				if err := pg("pg_verifybackup", "-n", "-q", part); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "pg_verifybackup: every file of the %d restored backups matches the server's manifest\n", len(parts))
			check = false
		}
		began = time.Now()
		if err := pg("pg_combinebackup", append(slices.Clone(parts), "--no-manifest", "--copy-file-range", "-o", data)...); err != nil {
			return err
		}
		fmt.Fprintf(out, "pg_combinebackup combined %d backups in %s\n", len(parts), time.Since(began).Round(time.Millisecond))
	}
	if check {
		if err := pg("pg_verifybackup", "-n", "-q", data); err != nil {
			return err
		}
		fmt.Fprintf(out, "pg_verifybackup: every file of the restored directory matches the server's manifest\n")
	}
	return nil
}

// loadLogical makes a fresh cluster in the scratch container, starts it
// and streams a pg_dumpall script into psql there.
func (d *dockerRuntime) loadLogical(ctx context.Context, node, repo string, b state.Backup, root string, pg func(string, ...string) error, out io.Writer) error {
	data := root + "/data"
	pwfile := root + "/.pwfile"
	if err := d.write(ctx, node, pgUser, pwfile, []byte(d.c.Postgres.Password.Reveal()+"\n")); err != nil {
		return err
	}
	err := pg("initdb", "-D", data, "-U", d.c.Postgres.Superuser, "--pwfile="+pwfile, "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
	_, _ = d.eng.Exec(context.Background(), node, pgUser, nil, nil, "rm", "-f", pwfile)
	if err != nil {
		return err
	}
	conf := []byte("listen_addresses = '*'\nport = 5432\n")
	hba := []byte("host all all all scram-sha-256\n")
	if _, err := d.eng.Exec(ctx, node, pgUser, nil, conf, "sh", "-c", `cat >> "$0/postgresql.auto.conf"`, data); err != nil {
		return err
	}
	if _, err := d.eng.Exec(ctx, node, pgUser, nil, hba, "sh", "-c", `cat >> "$0/pg_hba.conf"`, data); err != nil {
		return err
	}
	if err := pg("pg_ctl", "-D", data, "-l", root+"/postgresql.log", "-w", "-t", "120", "start"); err != nil {
		return err
	}
	pf, done, err := d.superPassfile(ctx, node)
	if err != nil {
		return err
	}
	defer done()
	rc, err := backup.Open(repo, b)
	if err != nil {
		return err
	}
	defer rc.Close()
	bin, err := d.eng.BinDir(ctx, node, d.c.Runtime.Docker.Image)
	if err != nil {
		return err
	}
	// As on the local runtime: the superuser's CREATE ROLE, which must
	// fail in a fresh cluster, is left out, and psql stops at any other error.
	r := backup.ForFreshCluster(io.TeeReader(rc, newMeter(out, 0)), d.c.Postgres.Superuser)
	env := []string{"PGPASSFILE=" + pf, "PGAPPNAME=pgha-restore"}
	if o, err := d.eng.ExecIn(ctx, node, pgUser, env, r, bin+"/psql", "-h", "127.0.0.1", "-U", d.c.Postgres.Superuser, "--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-"); err != nil {
		return fmt.Errorf("load %s (backup %s): psql: %w\n%s", filepath.Join(repo, filepath.FromSlash(b.Path)), b.ID, err, o)
	}
	return nil
}
