package docker

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Where things are inside a node's container. The node's volume is mounted
// at VolumeDir; PGDATA is a directory in it, so that a data directory can
// be renamed aside on the same filesystem, and the passfile, the log and
// the TLS files live beside it, outside what a clone or pg_rewind copies.
// config.DockerVolumeDir and config.DockerPGData name the same paths for
// the planner (a test in reconcile holds them equal).
const (
	User      = "postgres" // the image's PostgreSQL user
	VolumeDir = "/var/lib/pgha"
	PGData    = VolumeDir + "/data"
	Port      = 5432 // where PostgreSQL listens inside a node container
)

// Runtime runs one cluster's nodes as containers of one image and drives
// PostgreSQL in them by exec, as providers/local does with processes.
type Runtime struct {
	eng *Engine
	o   Options
}

// Node is a node's container: its name and the host port its PostgreSQL
// port is published on (at Options.Bind). The methods that may have to
// (re)create the container need the port; the others only its name.
type Node struct {
	Name string
	Port int
}

// New connects to the engine for the cluster o describes.
//
// An engine on another host that only DOCKER_HOST names is refused: the
// nodes' ports would be published on that host while pgha, reading
// cluster.hcl, dials them on this one's loopback. The file must declare
// such an engine (host, its TLS files, bind) so that the address pgha
// dials is written down.
func New(o Options) (*Runtime, error) {
	eng, err := NewEngine(o)
	if err != nil {
		return nil, err
	}
	if o.Host == "" {
		if h := eng.cli.DaemonHost(); strings.HasPrefix(h, "tcp://") {
			if u, err := url.Parse(h); err == nil && !isLoopback(u.Hostname()) {
				_ = eng.Close()
				return nil, fmt.Errorf("DOCKER_HOST=%s is an engine on another host, but cluster.hcl does not declare it: pgha would dial the nodes' published ports on this host. "+
					"Declare it in runtime \"docker\" { host = %q, ca_file, cert_file, key_file }, with bind if the nodes are reached at another of its addresses", h, h)
			}
		}
	}
	return &Runtime{eng: eng, o: o}, nil
}

// isLoopback: h names this host's loopback.
func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Close releases the engine's client.
func (r *Runtime) Close() error { return r.eng.Close() }

// Engine is the engine the runtime drives (networks, volumes, containers).
func (r *Runtime) Engine() *Engine { return r.eng }

// Name is a node's container (and volume) name.
func (r *Runtime) Name(node string) string { return r.eng.Name(node) }

// keeper is a container's main process: it idles, and on `docker stop`
// it shuts the server down cleanly (SIGINT: PostgreSQL's fast shutdown;
// Redis saves) and waits for it, instead of letting the engine kill it.
func keeper(pidfile string) []string {
	return []string{"sh", "-c", `stop() {
  p=$(head -n 1 ` + pidfile + ` 2>/dev/null)
  if [ -n "$p" ]; then kill -INT "$p" 2>/dev/null; while kill -0 "$p" 2>/dev/null; do sleep 1; done; fi
  exit 0
}
trap stop TERM INT
while :; do sleep 3600 & wait $!; done`}
}

// CreateNode makes the network, the node's volume and its running
// container (the keeper, not PostgreSQL), and gives the volume's
// directories to the image's postgres user. It never touches data: an
// existing volume is only chowned when its data directory is not the
// postgres user's yet (a fresh volume).
func (r *Runtime) CreateNode(ctx context.Context, n Node) error {
	if _, err := r.eng.EnsureNetwork(ctx); err != nil {
		return err
	}
	if err := r.eng.EnsureVolume(ctx, n.Name); err != nil {
		return err
	}
	err := r.eng.EnsureContainer(ctx, Spec{Node: n.Name, Role: "postgres", Image: r.o.Image, Config: r.o.Image,
		Mount: VolumeDir, Port: Port, Bind: r.o.Bind, HostPort: n.Port, Cmd: keeper(PGData + "/postmaster.pid")})
	if err != nil {
		return err
	}
	_, err = r.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", `set -e
V=`+VolumeDir+`; mkdir -p $V/data $V/log
[ "$(stat -c %u $V/data)" = "$(id -u `+User+`)" ] || chown -R `+User+`: $V
chown `+User+`: $V $V/data $V/log; chmod 700 $V/data`)
	if err != nil {
		return fmt.Errorf("prepare the volume of %s: %w", n.Name, err)
	}
	return nil
}

// bin is the path of a PostgreSQL program in the node's image.
func (r *Runtime) bin(ctx context.Context, node, name string) (string, error) {
	dir, err := r.eng.BinDir(ctx, node, r.o.Image)
	if err != nil {
		return "", err
	}
	return dir + "/" + name, nil
}

// pg runs a PostgreSQL program as the postgres user in a node's container.
func (r *Runtime) pg(ctx context.Context, node string, env []string, name string, args ...string) (string, error) {
	path, err := r.bin(ctx, node, name)
	if err != nil {
		return "", err
	}
	out, err := r.eng.Exec(ctx, node, User, env, nil, append([]string{path}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w", name, node, err)
	}
	return out, nil
}

// pgCancellable is pg for the long programs that change a data directory
// (pg_rewind, pg_basebackup): a cancel (Ctrl-C, a lost lock) ends them in
// the container too. docker exec does not end a process when its client
// goes away, and the attached stream does not end on a cancel: without
// this, pgha would wait for the program to finish, and a pg_rewind left
// running would go on changing the data directory under the next apply.
// The program runs as a child of a shell that records its pid in a file
// of its own (a fresh name each time, so that no stale pid is killed), and
// is killed as a local one is when its context ends.
func (r *Runtime) pgCancellable(ctx context.Context, node string, env []string, name string, args ...string) (string, error) {
	return r.pgCancellableIn(ctx, node, env, "", nil, "", name, args...)
}

// pgCancellableIn is pgCancellable with, in the same exec (each docker
// exec costs 50 to 100 ms here): if secret is set, stdin written first to
// that path (0600, as write does) and removed when the shell exits,
// whatever the program's outcome; and, only if the program succeeded, the
// shell commands then.
func (r *Runtime) pgCancellableIn(ctx context.Context, node string, env []string, secret string, stdin []byte, then, name string, args ...string) (string, error) {
	path, err := r.bin(ctx, node, name)
	if err != nil {
		return "", err
	}
	pidfile := fmt.Sprintf("%s/.%s-%d.pid", VolumeDir, name, time.Now().UnixNano())
	stop := context.AfterFunc(ctx, func() {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = r.eng.Exec(kctx, node, User, nil, nil, "sh", "-c", `for i in 1 2 3 4 5 6 7 8 9 10; do
p=$(cat "$0" 2>/dev/null); [ -n "$p" ] && { kill -KILL "$p" 2>/dev/null; exit 0; }; sleep 0.2
done`, pidfile)
	})
	defer stop()
	script := `f=$1; shift; "$@" & p=$!; echo $p > "$f"; wait $p; r=$?; rm -f "$f"; exit $r`
	if then != "" {
		script = `f=$1; shift; "$@" & p=$!; echo $p > "$f"; wait $p; r=$?; rm -f "$f"; [ $r -eq 0 ] || exit $r
` + then
	}
	if secret != "" {
		// The secret's name is the shell's $0; the EXIT trap removes it
		// on every way out of the shell but a kill of the shell itself,
		// which the caller's removal after a failure covers.
		script = `trap 'rm -f "$0"' EXIT; (umask 077; cat > "$0") || exit 1
` + script
	}
	cmd := append([]string{"sh", "-c", script, secret, pidfile, path}, args...)
	if secret == "" {
		cmd[3] = "sh"
	}
	out, err := r.eng.Exec(ctx, node, User, env, stdin, cmd...)
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w", name, node, err)
	}
	return out, nil
}

// write puts content into a file inside a node's container, 0600 and
// owned by user, through stdin: secrets never touch a command line or the
// image. The file is replaced by a rename, so a reader sees the old
// content or the new.
func (r *Runtime) write(ctx context.Context, node, user, path string, content []byte) error {
	_, err := r.eng.Exec(ctx, node, user, nil, content, "sh", "-c", `umask 077; cat > "$0.tmp" && mv "$0.tmp" "$0"`, path)
	if err != nil {
		return fmt.Errorf("write %s in %s: %w", path, node, err)
	}
	return nil
}

// remove deletes files in a node's container, whatever ctx says: it
// cleans up secrets after a command that may have been cancelled.
func (r *Runtime) remove(node string, paths ...string) {
	_, _ = r.eng.Exec(context.Background(), node, User, nil, nil, append([]string{"rm", "-f", "--"}, paths...)...)
}

// secret writes a short-lived private file (a password file, a passfile)
// into the node's volume and returns a function that removes it.
func (r *Runtime) secret(ctx context.Context, node, path string, content []byte) (func(), error) {
	if err := r.write(ctx, node, User, path, content); err != nil {
		return nil, err
	}
	return func() { r.remove(node, path) }, nil
}
