package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/internal/pgdata"
)

// ControlData runs pg_controldata on the node's data directory (stopped
// or running) and returns its fields ("Latest checkpoint location", ...).
func (r *Runtime) ControlData(ctx context.Context, n Node) (map[string]string, error) {
	if err := r.CreateNode(ctx, n); err != nil {
		return nil, err
	}
	out, err := r.pg(ctx, n.Name, []string{"LC_ALL=C"}, "pg_controldata", "-D", PGData)
	if err != nil {
		return nil, err
	}
	return pgdata.ParseControlData(out), nil
}

// Rewind runs pg_rewind on the node's stopped data directory against src
// (running), connecting as src.User through a short-lived passfile in the
// node's volume, and returns pg_rewind's report. A cancel ends pg_rewind
// in the container too. The node's container must exist, as it does
// for SetStandby: reconcile's rejoin makes sure of it (CreateNode) just
// before, and a second CreateNode here cost 60-100 ms of a rejoin on
// Docker (an inspect and an exec); without a container, the exec fails
// with docker's "No such container". After a successful pg_rewind (which
// copied the source's marker), m, if not nil, is written as the data
// directory's marker in the same exec, before the sync (an exec fewer).
func (r *Runtime) Rewind(ctx context.Context, n Node, src SQLSource, m *Marker) (string, error) {
	pf := VolumeDir + "/rewind.pgpass"
	content, err := pgconf.Passfile([]pgconf.PassEntry{{User: src.User, Password: src.Password}})
	if err != nil {
		return "", err
	}
	env := append([]string{"PGPASSFILE=" + pf}, src.Env...)
	then := syncDataScript
	if m != nil {
		text, err := m.Text()
		if err != nil {
			return "", fmt.Errorf("mark %s in %s: %w", PGData, r.Name(n.Name), err)
		}
		env = append(env, "PGHA_MARKER="+string(text))
		then = `t="` + PGData + "/" + MarkerFile + `"; (umask 077; printf '%s' "$PGHA_MARKER" > "$t.tmp") && mv "$t.tmp" "$t" || exit 1
` + then
	}
	conn := pgconf.Conninfo(pgconf.KV{Key: "host", Value: src.Host}, pgconf.KV{Key: "port", Value: strconv.Itoa(src.Port)},
		pgconf.KV{Key: "user", Value: src.User}, pgconf.KV{Key: "dbname", Value: "postgres"}, pgconf.KV{Key: "connect_timeout", Value: "10"})
	// The passfile is written, used and removed in pg_rewind's own exec
	// (two execs fewer than secret and its removal: ~110 ms on Docker);
	// after a failure it is removed again in case the shell itself died.
	out, err := r.pgCancellableIn(ctx, n.Name, env, pf, content, then,
		"pg_rewind", "--no-sync", "--target-pgdata", PGData, "--source-server", conn)
	if err != nil {
		r.remove(n.Name, pf)
	}
	return out, err
}

// syncDataScript makes what pg_rewind --no-sync wrote durable with one
// syncfs(2) (coreutils' sync -f) per filesystem holding the data
// directory, its pg_wal and its tablespaces (a symlink is followed), in
// the exec that ran pg_rewind, before anything starts the server.
// pg_rewind's own final sync fsyncs every file of the data directory
// (PostgreSQL 12 to 16 know no other way), most of which it did not touch;
// --sync-method=syncfs (PostgreSQL 17) does what this does, but only for
// images of 17 on. pg_rewind writes the control file before that final
// sync either way, so what reaches the disk, and in which order, is the
// same. A failing sync (Linux reports writeback errors through syncfs
// since 5.8) fails the rewind.
const syncDataScript = `for d in "` + PGData + `" "` + PGData + `"/pg_wal/ "` + PGData + `"/pg_tblspc/*/; do
[ -e "$d" ] || continue; sync -f "$d" || exit 1
done`

// checkMajor refuses an image whose PostgreSQL major version differs
// from the node's data directory, before anything is stopped: that is an
// upgrade (pg_upgrade), not a container replacement. It looks with a
// throwaway container of image over the node's volume.
func (r *Runtime) checkMajor(ctx context.Context, n Node, image string) error {
	out, err := r.eng.Run(ctx, image, n.Name, VolumeDir, "sh", "-c",
		"cat "+PGData+"/PG_VERSION; B=$("+FindBinScript+"); \"$B/postgres\" --version")
	if err != nil {
		return fmt.Errorf("check image %s against the data of %s: %w", image, n.Name, err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return fmt.Errorf("check image %s: unexpected output %q", image, out)
	}
	data := strings.TrimSpace(lines[0])
	fields := strings.Fields(lines[len(lines)-1])
	ver := fields[len(fields)-1]
	if major, _, _ := strings.Cut(ver, "."); major != data {
		return fmt.Errorf("image %s has PostgreSQL %s but the data of %s is version %s: a major version upgrade needs pg_upgrade; pgha refuses to replace the container (set image back)", image, ver, n.Name, data)
	}
	return nil
}

// Replace recreates the node's container from the runtime's image and
// network, keeping its volume (its data), and starts PostgreSQL again.
func (r *Runtime) Replace(ctx context.Context, n Node, logFile string) error {
	if err := r.checkMajor(ctx, n, r.o.Image); err != nil {
		return err
	}
	_ = r.Stop(ctx, n, "fast")
	if err := r.eng.RemoveContainer(ctx, n.Name); err != nil {
		return err
	}
	if err := r.CreateNode(ctx, n); err != nil {
		return err
	}
	return r.Start(ctx, n, logFile)
}

// Destroy stops the node and removes its container and, unless keepData,
// its volume; the network goes with the last container.
func (r *Runtime) Destroy(ctx context.Context, n Node, keepData bool) error {
	_ = r.Stop(ctx, n, "fast")
	return r.removeNode(ctx, n.Name, keepData)
}

func (r *Runtime) removeNode(ctx context.Context, node string, keepData bool) error {
	if err := r.eng.RemoveContainer(ctx, node); err != nil {
		return err
	}
	if !keepData {
		if err := r.eng.RemoveVolume(ctx, node); err != nil {
			return err
		}
	}
	return r.removeNetworkIfUnused(ctx)
}

// removeNetworkIfUnused drops the network once no pgha container is left.
func (r *Runtime) removeNetworkIfUnused(ctx context.Context) error {
	inv, err := r.eng.Observe(ctx)
	if err != nil || len(inv.Containers) > 0 {
		return err
	}
	return r.eng.RemoveNetwork(ctx)
}

// ForkFacts runs pgdata.ForkScript on the node's stopped data directory
// with probes (pgdata.ForkProbes), in one exec, and returns its output.
func (r *Runtime) ForkFacts(ctx context.Context, n Node, probes []string) (string, error) {
	if err := r.CreateNode(ctx, n); err != nil {
		return "", err
	}
	script := `B=$(` + FindBinScript + `) || exit 3; PATH="$B:$PATH"; ` + pgdata.ForkScript
	out, err := r.eng.Exec(ctx, n.Name, User, nil, nil, append([]string{"sh", "-c", script, "sh", PGData}, probes...)...)
	if err != nil {
		return out, fmt.Errorf("inspect the WAL of %s: %w", n.Name, err)
	}
	return out, nil
}
