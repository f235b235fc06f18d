package docker

import (
	"context"
	"fmt"
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
	hbaText, err := pgconf.HBA(hba)
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	// One exec: the two files, then the include line (a start right
	// after, as in a restart in place, waited for three).
	err = r.writeFiles(ctx, n.Name, User, []file{{PGData + "/pgha.conf", conf}, {PGData + "/pg_hba.conf", hbaText}},
		`grep -qxF "$1" "$2" || echo "$1" >> "$2"`, pgconf.IncludeLine, PGData+"/postgresql.conf")
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
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
	fs := make([]file, len(paths))
	for i, p := range paths {
		fs[i] = file{p, files[p]}
	}
	return r.writeFiles(ctx, node, user, fs, "")
}

// file is one file writeFiles writes: its path in the container and its
// content.
type file struct {
	path    string
	content []byte
}

// writeFilesScript reads, from standard input, for each file its path on
// a line, its length in bytes on a line, then that many bytes, and puts
// them in place as write does (0600, through a rename), creating the
// directory (0700) when missing; then it runs $0 (a command, "" for
// none) with the other arguments. dash's read takes one byte at a time
// from a pipe and head -c reads no more than it is asked for, so each
// file's bytes go to that file, binary or not.
const writeFilesScript = `umask 077
after=$0
while IFS= read -r p && IFS= read -r n; do
  mkdir -p "$(dirname "$p")" && head -c "$n" > "$p.tmp" && [ "$(wc -c < "$p.tmp")" -eq "$n" ] && mv "$p.tmp" "$p" || { echo "write $p failed" >&2; exit 1; }
done
[ -z "$after" ] || sh -c "$after" "$@"`

// writeFiles writes files in one exec as user (see writeFilesScript),
// secrets through stdin as write does, and then runs after, a shell
// script given args as $1..., in the same exec. Writing each file with an
// exec of its own cost 60-150 ms a file under load, for a restart in
// place that writes seven before pg_ctl can start.
func (r *Runtime) writeFiles(ctx context.Context, node, user string, files []file, after string, args ...string) error {
	var in []byte
	for _, f := range files {
		if strings.ContainsAny(f.path, "\n\r") {
			return fmt.Errorf("write %q in %s: a path with a line break", f.path, node)
		}
		in = fmt.Appendf(in, "%s\n%d\n", f.path, len(f.content))
		in = append(in, f.content...)
	}
	if in == nil {
		in = []byte{} // an empty stdin, not none: read must see its end
	}
	out, err := r.eng.Exec(ctx, node, user, nil, in, append([]string{"sh", "-c", writeFilesScript, after, "sh"}, args...)...)
	if err != nil {
		return fmt.Errorf("write files in %s: %w %s", node, err, strings.TrimSpace(out))
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
