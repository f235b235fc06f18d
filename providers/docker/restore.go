package docker

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/internal/bytesize"
)

// Chain is a backup chain to restore, full first, as streams: the
// provider knows nothing of the repository that holds them.
type Chain struct {
	Parts []ChainPart
	// Combine says the parts are a PostgreSQL 17 block-level chain: each
	// goes into a directory of its own and pg_combinebackup makes the
	// data directory. Otherwise every part is extracted into the data
	// directory in turn (a WAL chain's segments over the full's pg_wal).
	Combine bool
	// Progress sees every byte copied in (a meter that prints how far
	// the copy is); nil for none.
	Progress io.Writer
}

// ChainPart is one backup of a chain.
type ChainPart struct {
	ID   string
	Open func() (io.ReadCloser, error) // the tar stream
	// Manifest is the server's backup_manifest, nil when the backup kept
	// none. pg_combinebackup reads each part's; pg_verifybackup the
	// restored directory's.
	Manifest func() ([]byte, error)
}

// serverManifest is the file pg_basebackup -Fp leaves beside the data.
const serverManifest = "backup_manifest"

// restoreTarget is where a chain is restored: a node's volume or a
// scratch container, with the way PostgreSQL's programs run there.
type restoreTarget struct {
	node, root, data string
	pg               func(ctx context.Context, name string, args ...string) error
}

// loadChain streams a chain into a container: the tars through the
// engine's archive endpoint into t.data, or, for a block-level chain,
// each into its own directory under t.root, checked by pg_verifybackup
// when check is set, then combined into t.data by pg_combinebackup. It
// reports what it did to out.
func (r *Runtime) loadChain(ctx context.Context, t restoreTarget, ch Chain, check bool, out io.Writer) error {
	var copied counter
	began := time.Now()
	var parts []string
	partsDir := ""
	if ch.Combine {
		// The parts go into a directory mktemp makes, fresh: nothing that
		// was in the volume before (a crashed restore's leftovers, a
		// symlink) is written into, and only this directory is removed.
		o, err := r.eng.Exec(ctx, t.node, User, nil, nil, "mktemp", "-d", t.root+"/.restore-parts.XXXXXX")
		if err != nil {
			return fmt.Errorf("restore parts directory in %s: %w", r.Name(t.node), err)
		}
		partsDir = strings.TrimSpace(o)
		if !strings.HasPrefix(partsDir, t.root+"/.restore-parts.") || strings.ContainsAny(partsDir, "\n ") {
			return fmt.Errorf("restore parts directory in %s: mktemp said %q", r.Name(t.node), o)
		}
		defer r.eng.Exec(context.Background(), t.node, User, nil, nil, "rm", "-rf", "--", partsDir)
	}
	for i, p := range ch.Parts {
		dir := t.data
		if ch.Combine {
			dir = fmt.Sprintf("%s/part%d", partsDir, i)
			parts = append(parts, dir)
		}
		rc, err := p.Open()
		if err != nil {
			return fmt.Errorf("restore %s: %w", p.ID, err)
		}
		var in io.Reader = io.TeeReader(rc, &copied)
		if ch.Progress != nil {
			in = io.TeeReader(in, ch.Progress)
		}
		if _, err := r.eng.Exec(ctx, t.node, User, nil, nil, "mkdir", "-p", dir); err != nil {
			rc.Close()
			return err
		}
		err = r.eng.CopyIn(ctx, t.node, dir, in)
		rc.Close()
		if err != nil {
			return fmt.Errorf("restore %s into %s: %w", p.ID, r.Name(t.node), err)
		}
	}
	// The archive names the backed-up server's owner; here it is the
	// image's postgres user.
	owned := parts
	if len(owned) == 0 {
		owned = []string{t.data}
	}
	if _, err := r.eng.Exec(ctx, t.node, "root", nil, nil, append([]string{"chown", "-R", User + ":"}, owned...)...); err != nil {
		return err
	}
	fmt.Fprintf(out, "copied %s into %s in %s\n", bytesize.Format(int64(copied)), r.Name(t.node), time.Since(began).Round(time.Millisecond))
	for i, p := range ch.Parts {
		if p.Manifest == nil || (!ch.Combine && i > 0) {
			continue
		}
		content, err := p.Manifest()
		if err != nil {
			return err
		}
		dir := t.data
		if ch.Combine {
			dir = parts[i]
		}
		if err := r.write(ctx, t.node, User, dir+"/"+serverManifest, content); err != nil {
			return err
		}
	}
	if ch.Combine {
		// Each part is checked as the server sent it; the combined
		// directory is pg_combinebackup's own work, not checked again.
		if check {
			for _, part := range parts {
				if err := t.pg(ctx, "pg_verifybackup", "-n", "-q", part); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "pg_verifybackup: every file of the %d restored backups matches the server's manifest\n", len(parts))
			check = false
		}
		began = time.Now()
		if err := t.pg(ctx, "pg_combinebackup", append(slices.Clone(parts), "--no-manifest", "--copy-file-range", "-o", t.data)...); err != nil {
			return err
		}
		fmt.Fprintf(out, "pg_combinebackup combined %d backups in %s\n", len(parts), time.Since(began).Round(time.Millisecond))
	}
	if check {
		if err := t.pg(ctx, "pg_verifybackup", "-n", "-q", t.data); err != nil {
			return err
		}
		fmt.Fprintf(out, "pg_verifybackup: every file of the restored directory matches the server's manifest\n")
	}
	return nil
}

// counter counts the bytes written through it.
type counter int64

func (c *counter) Write(b []byte) (int, error) {
	*c += counter(len(b))
	return len(b), nil
}

// RestoreNode restores a chain into the node's data directory, in its
// volume: the current data directory is renamed to aside first (nothing
// is deleted), the chain streams in through the engine, and the directory
// is left to start in recovery (recovery.signal, no standby.signal). The
// node must be stopped. The caller marks it and writes its settings.
func (r *Runtime) RestoreNode(ctx context.Context, n Node, aside string, ch Chain, out io.Writer) error {
	if _, err := r.moveAside(ctx, n, aside); err != nil {
		return err
	}
	fmt.Fprintf(out, "Moved %s aside to %s in %s.\n", PGData, aside, r.Name(n.Name))
	if ch.Combine {
		// pg_combinebackup makes the output directory itself.
		if _, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "rmdir", PGData); err != nil {
			return err
		}
	}
	t := restoreTarget{node: n.Name, root: VolumeDir, data: PGData, pg: func(ctx context.Context, name string, args ...string) error {
		_, err := r.pg(ctx, n.Name, nil, name, args...)
		return err
	}}
	if err := r.loadChain(ctx, t, ch, false, out); err != nil {
		return err
	}
	_, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", `set -e; rm -f "$0/standby.signal" "$0/postmaster.pid"; touch "$0/recovery.signal"; chmod 700 "$0"`, PGData)
	return err
}
