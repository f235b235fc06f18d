package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgha/pgha/internal/pgdata"
)

// MarkerFile is pgdata.MarkerFile, the same file as on the local runtime.
const MarkerFile = pgdata.MarkerFile

// Marker is what MarkerFile records.
type Marker = pgdata.Marker

// WriteMarker records in the node's data directory that pgha made it for
// m.Cluster and m.Node; it follows every initdb, clone, rewind and
// restore, which leave a directory without it or with the source's.
func (r *Runtime) WriteMarker(ctx context.Context, n Node, m Marker) error {
	content, err := m.Text()
	if err != nil {
		return fmt.Errorf("mark %s in %s: %w", PGData, r.Name(n.Name), err)
	}
	return r.write(ctx, n.Name, User, PGData+"/"+MarkerFile, content)
}

// CheckOwned is local.CheckOwned inside the node's container, for the
// runtime's cluster: dir (a data directory, or one set aside) is missing
// or empty, carries pgha's marker for this cluster, or was made by an
// older pgha (PG_VERSION beside a pgha.conf starting with pgha's header).
// Anything else is an error that says why.
func (r *Runtime) CheckOwned(ctx context.Context, n Node, dir string) error {
	out, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", `d="$0"; m="$0/$1"
[ -e "$d" ] || { echo ok; exit 0; }
[ -z "$(ls -A "$d" 2>/dev/null)" ] && { echo ok; exit 0; }
if [ -L "$m" ]; then echo "its $1 is not a regular file"; exit 0; fi
if [ -f "$m" ]; then
  grep -qxF "cluster = $2" "$m" && { echo ok; exit 0; }
  echo "it belongs to another cluster ($(grep -m1 '^cluster = ' "$m"))"; exit 0
fi
if [ -f "$d/PG_VERSION" ] && [ -f "$d/pgha.conf" ] && [ "$(head -n1 "$d/pgha.conf")" = "$3" ]; then echo ok; exit 0; fi
echo "it carries no $1 and no pgha.conf written by pgha"`, dir, MarkerFile, r.o.Cluster, pgdata.Header)
	if err != nil {
		return fmt.Errorf("check %s in %s: %w", dir, r.Name(n.Name), err)
	}
	if res := strings.TrimSpace(out); res != "ok" {
		return fmt.Errorf("%s in %s: %s; pgha deletes only data directories it made for cluster %q", dir, r.Name(n.Name), res, r.o.Cluster)
	}
	return nil
}
