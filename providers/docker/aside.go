package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/state"
)

// asideScript lists the set-aside data directories in the volume, one
// "aside <KiB> <path> <owned-by> <legacy>" line each: the cluster its
// pgha.marker names ("-": none) and whether it is a data directory an
// older pgha made (PG_VERSION beside a pgha.conf with pgha's header), as
// CheckOwned decides.
var asideScript = `for a in ` + PGData + `.aside-* ` + PGData + `.before-restore-*; do
[ -d "$a" ] && [ ! -L "$a" ] || continue
c=-; [ -f "$a/` + MarkerFile + `" ] && [ ! -L "$a/` + MarkerFile + `" ] && c=$(sed -n 's/^cluster = //p' "$a/` + MarkerFile + `" | head -n1)
l=0; [ -f "$a/PG_VERSION" ] && [ -f "$a/pgha.conf" ] && [ "$(head -n1 "$a/pgha.conf")" = "` + pgdata.Header + `" ] && l=1
echo "aside $(du -sk "$a" | cut -f1) $a ${c:--} $l"
done
true`

// parseAside reads asideScript's lines; a directory is pgha's when its
// marker names cluster, or (no marker) an older pgha made it.
func parseAside(out, cluster string) []state.AsideDir {
	var dirs []state.AsideDir
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || f[0] != "aside" {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		owned := f[3] == cluster || (f[3] == "-" && f[4] == "1")
		dirs = append(dirs, state.AsideDir{Path: f[2], Bytes: kb * 1024, Owned: owned})
	}
	return dirs
}

// FindAside lists the node's set-aside data directories with their
// sizes and whether they are this cluster's (Owned); nil when the
// container cannot be asked.
func (r *Runtime) FindAside(ctx context.Context, n Node) []state.AsideDir {
	out, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", asideScript)
	if err != nil {
		return nil
	}
	return parseAside(out, r.o.Cluster)
}

// MoveAside renames the node's stopped data directory to
// pgdata.AsidePath(PGData, stamp) inside its volume (one filesystem:
// instant, nothing copied) and leaves an empty one, 0700, for a re-clone.
// It refuses while a postmaster runs there, and when the target exists.
// A missing or empty directory has nothing to keep: "" is returned.
func (r *Runtime) MoveAside(ctx context.Context, n Node, stamp string) (string, error) {
	return r.moveAside(ctx, n, pgdata.AsidePath(PGData, stamp))
}

func (r *Runtime) moveAside(ctx context.Context, n Node, aside string) (string, error) {
	if err := r.CreateNode(ctx, n); err != nil {
		return "", err
	}
	out, err := r.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", `set -e
if [ -n "$(ls -A "$0" 2>/dev/null)" ]; then
  p=$(head -n 1 "$0/postmaster.pid" 2>/dev/null || true)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -q postgres "/proc/$p/cmdline" 2>/dev/null; then echo "PostgreSQL (pid $p) is running in $0; stop it first" >&2; exit 1; fi
  if [ -e "$1" ]; then echo "$1 exists already" >&2; exit 1; fi
  mv "$0" "$1"; echo moved
fi
mkdir -p "$0"; chown `+User+`: "$0"; chmod 700 "$0"`, PGData, aside)
	if err != nil {
		return "", fmt.Errorf("move %s aside in %s: %w", PGData, r.Name(n.Name), err)
	}
	if !strings.Contains(out, "moved") {
		return "", nil
	}
	return aside, nil
}

// RemoveAside deletes one set-aside data directory inside the node's
// volume. It refuses anything whose name does not say it was set aside
// from PGData, a symlink, something that is no data directory, and a
// directory pgha did not make for this cluster (CheckOwned).
func (r *Runtime) RemoveAside(ctx context.Context, n Node, path string) error {
	if !pgdata.IsAsideOf(PGData, path) {
		return fmt.Errorf("remove %s: not a set-aside data directory of %s", path, PGData)
	}
	if err := r.CreateNode(ctx, n); err != nil {
		return err
	}
	if err := r.CheckOwned(ctx, n, path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if _, err := r.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", `set -e
[ -L "$0" ] && { echo "$0 is a symlink" >&2; exit 1; }
[ -d "$0" ] || exit 0
[ -f "$0/PG_VERSION" ] || [ -d "$0/base" ] || { echo "$0 does not look like a PostgreSQL data directory" >&2; exit 1; }
rm -rf -- "$0"`, path); err != nil {
		return fmt.Errorf("remove %s in %s: %w", path, r.Name(n.Name), err)
	}
	return nil
}
