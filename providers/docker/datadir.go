package docker

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/pgha/pgha/internal/pgconf"
)

// Configure writes the node's settings to pgha.conf, makes
// postgresql.conf include it (once), and writes pg_hba.conf from hba, as
// the local runtime does.
func (r *Runtime) Configure(ctx context.Context, n Node, settings map[string]string, hba []string) error {
	conf, err := pgconf.Settings(settings)
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	if err := r.write(ctx, n.Name, User, PGData+"/pgha.conf", conf); err != nil {
		return err
	}
	hbaText, err := pgconf.HBA(hba)
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	if err := r.write(ctx, n.Name, User, PGData+"/pg_hba.conf", hbaText); err != nil {
		return err
	}
	_, err = r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c",
		`grep -qxF "$1" "$0" || echo "$1" >> "$0"`, PGData+"/postgresql.conf", pgconf.IncludeLine)
	if err != nil {
		return fmt.Errorf("include pgha.conf on %s: %w", n.Name, err)
	}
	return nil
}

// SetStandby creates (on) or removes (off) standby.signal.
func (r *Runtime) SetStandby(ctx context.Context, n Node, on bool) error {
	cmd := "rm -f " + PGData + "/standby.signal"
	if on {
		cmd = "touch " + PGData + "/standby.signal"
	}
	_, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", cmd)
	return err
}

// PassEntry is one line of a libpq passfile.
type PassEntry = pgconf.PassEntry

// WritePassfile writes a libpq passfile at path in the node's container,
// 0600 for the postgres user: standbys and pg_basebackup read the
// replication password there, never from a command line.
func (r *Runtime) WritePassfile(ctx context.Context, n Node, path string, entries []PassEntry) error {
	content, err := pgconf.Passfile(entries)
	if err != nil {
		return err
	}
	return r.write(ctx, n.Name, User, path, content)
}

// WritePrivateFiles writes each file 0600 for the postgres user in the
// node's container, creating its directory 0700 (TLS keys and
// certificates). The content goes through the engine's stdin: it never
// touches a command line or the image.
func (r *Runtime) WritePrivateFiles(ctx context.Context, n Node, files map[string][]byte) error {
	return r.writePrivate(ctx, n.Name, User, files)
}

func (r *Runtime) writePrivate(ctx context.Context, node, user string, files map[string][]byte) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if _, err := r.eng.Exec(ctx, node, user, nil, nil, "sh", "-c", `umask 077; mkdir -p "$0"`, path.Dir(p)); err != nil {
			return fmt.Errorf("directory of %s in %s: %w", p, node, err)
		}
		if err := r.write(ctx, node, user, p, files[p]); err != nil {
			return err
		}
	}
	return nil
}

// ReadFiles reads files in the node's container; a missing one reads as
// empty. It fails only when the container cannot be asked.
func (r *Runtime) ReadFiles(ctx context.Context, n Node, paths ...string) ([][]byte, error) {
	const split = "#pgha-split"
	script := ""
	for i := range paths {
		if i > 0 {
			script += `echo "` + split + `"; `
		}
		script += fmt.Sprintf(`cat "$%d" 2>/dev/null; `, i+1)
	}
	out, err := r.eng.Exec(ctx, n.Name, User, nil, nil, append([]string{"sh", "-c", script + "true", "sh"}, paths...)...)
	if err != nil {
		return nil, err
	}
	parts := strings.SplitN(out, split+"\n", len(paths))
	files := make([][]byte, len(paths))
	for i := range files {
		if i < len(parts) {
			files[i] = []byte(parts[i])
		}
	}
	return files, nil
}
