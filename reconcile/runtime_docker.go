package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/providers/docker"
	"github.com/pgha/pgha/providers/local"
	"github.com/pgha/pgha/state"
)

// dockerRuntime runs each node in a container with its data on a named
// volume, and drives PostgreSQL inside it with exec.
type dockerRuntime struct {
	c   *config.Cluster
	eng *docker.Engine
}

const (
	pgUser     = "postgres"
	volumeDir  = config.DockerVolumeDir
	pgData     = config.DockerPGData
	redisDir   = "/data"
	redisPort  = 6379
	redisNode  = "redis"
	tmpPwdFile = volumeDir + "/.pwfile"
)

func newDockerRuntime(c *config.Cluster) (*dockerRuntime, error) {
	d := c.Runtime.Docker
	eng, err := docker.New(docker.Options{Host: d.Host, Cluster: c.Name, Prefix: d.Prefix, Network: d.Network})
	if err != nil {
		return nil, err
	}
	return &dockerRuntime{c: c, eng: eng}, nil
}

func (d *dockerRuntime) Close() { _ = d.eng.Close() }

func (d *dockerRuntime) Observe(ctx context.Context, s *state.Cluster, pg func(*config.Node, *state.Node)) {
	s.Network = &state.Network{Name: d.c.Runtime.Docker.Network}
	inv, err := d.eng.Observe(ctx)
	if err != nil {
		for _, n := range s.Nodes {
			n.RuntimeError = err.Error()
		}
		return
	}
	s.Network.Exists = inv.Network
	s.Catalog.DirExists = inv.Volumes[redisNode]
	var wg sync.WaitGroup
	for _, n := range s.Nodes {
		cn := d.c.Node(n.Name)
		n.DirExists = inv.Volumes[n.Name]
		if ct, ok := inv.Containers[n.Name]; ok {
			n.Container = &state.Container{Name: ct.Name, Running: ct.Running, Image: ct.Config}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.observeNode(ctx, cn, n, pg)
		}()
	}
	wg.Wait()
	// PostgreSQL containers with the cluster's label that no declared node
	// owns: nodes removed from cluster.hcl. Their PostgreSQL is not asked.
	var names []string
	for name, ct := range inv.Containers {
		// Scratch restores and volume probes carry the label too, but are
		// no nodes.
		if ct.Role == "postgres" && d.c.Node(name) == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ct := inv.Containers[name]
		n := &state.Node{Name: name, DataDir: "volume " + d.eng.Name(name), DirExists: inv.Volumes[name], Initialized: inv.Volumes[name],
			Running: ct.Running, Container: &state.Container{Name: ct.Name, Running: ct.Running, Image: ct.Config}}
		if !ct.Running {
			n.Error = "not running"
		}
		s.Undeclared = append(s.Undeclared, n)
	}
}

// observeNode asks PostgreSQL first (one connection answers everything);
// only when it does not answer does it look inside the volume.
func (d *dockerRuntime) observeNode(ctx context.Context, cn *config.Node, n *state.Node, pg func(*config.Node, *state.Node)) {
	switch {
	case n.Container != nil && n.Container.Running:
		pg(cn, n)
		if n.Reachable {
			n.Running, n.Initialized, n.StandbySignal = true, true, n.InRecovery
			if out, err := d.eng.Exec(ctx, cn.Name, pgUser, nil, nil, "sh", "-c", asideScript); err == nil {
				n.Aside = parseAside(out, d.c.Name)
			}
			return
		}
		out, err := d.eng.Exec(ctx, cn.Name, pgUser, nil, nil, "sh", "-c", statusScript)
		if err != nil {
			n.RuntimeError = err.Error()
			return
		}
		n.Aside = parseAside(out, d.c.Name)
		n.Initialized = strings.Contains(out, "initialized")
		n.StandbySignal = strings.Contains(out, "standby")
		n.Running = strings.Contains(out, "running")
		if !n.Running {
			n.Error = "not running"
		}
	case n.DirExists:
		// The container is gone or stopped but the volume is there: look
		// inside it with a throwaway container, so that a kept volume is
		// restarted and never re-cloned.
		out, err := d.eng.Run(ctx, d.c.Runtime.Docker.Image, cn.Name, volumeDir, "sh", "-c", statusScript)
		if err != nil {
			n.RuntimeError = err.Error()
			return
		}
		n.Aside = parseAside(out, d.c.Name)
		n.Initialized = strings.Contains(out, "initialized")
		n.StandbySignal = strings.Contains(out, "standby")
		n.Error = "not running"
	default:
		n.Error = "not running"
	}
}

var statusScript = `D=` + pgData + `
[ -f $D/PG_VERSION ] && echo initialized
[ -f $D/standby.signal ] && echo standby
[ -f $D/postmaster.pid ] && kill -0 $(head -1 $D/postmaster.pid) 2>/dev/null && echo running
` + asideScript

// asideScript lists the set-aside data directories in the volume, one
// "aside <KiB> <path> <owned-by> <legacy>" line each: the cluster its
// pgha.marker names ("-": none) and whether it is a data directory an
// older pgha made (PG_VERSION beside a pgha.conf with pgha's header), as
// local.CheckOwned decides.
var asideScript = `for a in ` + pgData + `.aside-* ` + pgData + `.before-restore-*; do
[ -d "$a" ] && [ ! -L "$a" ] || continue
c=-; [ -f "$a/` + local.MarkerFile + `" ] && [ ! -L "$a/` + local.MarkerFile + `" ] && c=$(sed -n 's/^cluster = //p' "$a/` + local.MarkerFile + `" | head -n1)
l=0; [ -f "$a/PG_VERSION" ] && [ -f "$a/pgha.conf" ] && [ "$(head -n1 "$a/pgha.conf")" = "` + strings.TrimSuffix(pgconf.Header, "\n") + `" ] && l=1
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

// ensureNode makes the network, the volume and the running container, and
// gives the volume's directories to the image's postgres user.
func (d *dockerRuntime) ensureNode(ctx context.Context, n *config.Node) error {
	if _, err := d.eng.EnsureNetwork(ctx); err != nil {
		return err
	}
	if err := d.eng.EnsureVolume(ctx, n.Name); err != nil {
		return err
	}
	dk := d.c.Runtime.Docker
	err := d.eng.EnsureContainer(ctx, docker.Spec{Node: n.Name, Role: "postgres", Image: dk.Image, Config: dk.Image,
		Mount: volumeDir, Port: config.DockerPort, Bind: dk.Bind, HostPort: n.Port, Cmd: keeper(pgData + "/postmaster.pid")})
	if err != nil {
		return err
	}
	_, err = d.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", `set -e
V=`+volumeDir+`; mkdir -p $V/data $V/log
[ "$(stat -c %u $V/data)" = "$(id -u `+pgUser+`)" ] || chown -R `+pgUser+`: $V
chown `+pgUser+`: $V $V/data $V/log; chmod 700 $V/data`)
	if err != nil {
		return fmt.Errorf("prepare the volume of %s: %w", n.Name, err)
	}
	return nil
}

func (d *dockerRuntime) bin(ctx context.Context, n *config.Node, name string) (string, error) {
	dir, err := d.eng.BinDir(ctx, n.Name, d.c.Runtime.Docker.Image)
	if err != nil {
		return "", err
	}
	return dir + "/" + name, nil
}

// pg runs a PostgreSQL binary as the postgres user in n's container.
func (d *dockerRuntime) pg(ctx context.Context, n *config.Node, env []string, name string, args ...string) (string, error) {
	path, err := d.bin(ctx, n, name)
	if err != nil {
		return "", err
	}
	out, err := d.eng.Exec(ctx, n.Name, pgUser, env, nil, append([]string{path}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w", name, n.Name, err)
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
// is killed as exec.CommandContext kills a local one.
func (d *dockerRuntime) pgCancellable(ctx context.Context, n *config.Node, env []string, name string, args ...string) (string, error) {
	path, err := d.bin(ctx, n, name)
	if err != nil {
		return "", err
	}
	pidfile := fmt.Sprintf("%s/.%s-%d.pid", volumeDir, name, time.Now().UnixNano())
	stop := context.AfterFunc(ctx, func() {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = d.eng.Exec(kctx, n.Name, pgUser, nil, nil, "sh", "-c", `for i in 1 2 3 4 5 6 7 8 9 10; do
p=$(cat "$0" 2>/dev/null); [ -n "$p" ] && { kill -KILL "$p" 2>/dev/null; exit 0; }; sleep 0.2
done`, pidfile)
	})
	defer stop()
	cmd := append([]string{"sh", "-c", `f=$1; shift; "$@" & p=$!; echo $p > "$f"; wait $p; r=$?; rm -f "$f"; exit $r`, "sh", pidfile, path}, args...)
	out, err := d.eng.Exec(ctx, n.Name, pgUser, env, nil, cmd...)
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w", name, n.Name, err)
	}
	return out, nil
}

// write puts content into a file inside n's container, owned by user,
// through stdin: secrets never touch a command line or the image.
func (d *dockerRuntime) write(ctx context.Context, node, user, path string, content []byte) error {
	_, err := d.eng.Exec(ctx, node, user, nil, content, "sh", "-c", `umask 077; cat > "$0.tmp" && mv "$0.tmp" "$0"`, path)
	if err != nil {
		return fmt.Errorf("write %s in %s: %w", path, node, err)
	}
	return nil
}

func (d *dockerRuntime) CreateNode(ctx context.Context, n *config.Node) error {
	return d.ensureNode(ctx, n)
}

func (d *dockerRuntime) InitDB(ctx context.Context, n *config.Node) error {
	if err := d.ensureNode(ctx, n); err != nil {
		return err
	}
	if err := d.write(ctx, n.Name, pgUser, tmpPwdFile, []byte(d.c.Postgres.Password.Reveal()+"\n")); err != nil {
		return err
	}
	defer d.eng.Exec(context.Background(), n.Name, pgUser, nil, nil, "rm", "-f", tmpPwdFile)
	_, err := d.pg(ctx, n, nil, "initdb", "-D", pgData, "-U", d.c.Postgres.Superuser, "--pwfile", tmpPwdFile,
		"--data-checksums", "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
	if err != nil {
		return err
	}
	return d.mark(ctx, n)
}

// mark writes pgha's marker (local.MarkerFile, the same text as on the
// local runtime) into n's data directory after initdb, a clone, a rewind
// or a restore, so that pgha may later delete it (checkOwned).
func (d *dockerRuntime) mark(ctx context.Context, n *config.Node) error {
	content := fmt.Sprintf("%s# pgha deletes this directory only while this file names its cluster.\ncluster = %s\nnode = %s\n",
		pgconf.Header, d.c.Name, n.Name)
	return d.write(ctx, n.Name, pgUser, pgData+"/"+local.MarkerFile, []byte(content))
}

// checkOwned is local.CheckOwned inside n's container: dir (a data
// directory, or one set aside) is missing or empty, carries pgha's marker for this cluster, or was made by an older
// pgha (PG_VERSION beside a pgha.conf starting with pgha's header).
func (d *dockerRuntime) checkOwned(ctx context.Context, n *config.Node, dir string) error {
	out, err := d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "sh", "-c", `d="$0"; m="$0/$1"
[ -e "$d" ] || { echo ok; exit 0; }
[ -z "$(ls -A "$d" 2>/dev/null)" ] && { echo ok; exit 0; }
if [ -L "$m" ]; then echo "its $1 is not a regular file"; exit 0; fi
if [ -f "$m" ]; then
  grep -qxF "cluster = $2" "$m" && { echo ok; exit 0; }
  echo "it belongs to another cluster ($(grep -m1 '^cluster = ' "$m"))"; exit 0
fi
if [ -f "$d/PG_VERSION" ] && [ -f "$d/pgha.conf" ] && [ "$(head -n1 "$d/pgha.conf")" = "$3" ]; then echo ok; exit 0; fi
echo "it carries no $1 and no pgha.conf written by pgha"`, dir, local.MarkerFile, d.c.Name, strings.TrimSuffix(pgconf.Header, "\n"))
	if err != nil {
		return fmt.Errorf("check %s in %s: %w", dir, d.eng.Name(n.Name), err)
	}
	if r := strings.TrimSpace(out); r != "ok" {
		return fmt.Errorf("%s in %s: %s; pgha deletes only data directories it made for cluster %q", dir, d.eng.Name(n.Name), r, d.c.Name)
	}
	return nil
}

func (d *dockerRuntime) Configure(ctx context.Context, n *config.Node, settings map[string]string, hba []string) error {
	conf, err := pgconf.Settings(settings)
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	if err := d.write(ctx, n.Name, pgUser, pgData+"/pgha.conf", conf); err != nil {
		return err
	}
	hbaText, err := pgconf.HBA(hba)
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	if err := d.write(ctx, n.Name, pgUser, pgData+"/pg_hba.conf", hbaText); err != nil {
		return err
	}
	_, err = d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "sh", "-c",
		`grep -qxF "$1" "$0" || echo "$1" >> "$0"`, pgData+"/postgresql.conf", pgconf.IncludeLine)
	if err != nil {
		return fmt.Errorf("include pgha.conf on %s: %w", n.Name, err)
	}
	return nil
}

func (d *dockerRuntime) SetStandby(ctx context.Context, n *config.Node, on bool) error {
	cmd := "rm -f " + pgData + "/standby.signal"
	if on {
		cmd = "touch " + pgData + "/standby.signal"
	}
	_, err := d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "sh", "-c", cmd)
	return err
}

func (d *dockerRuntime) WritePassfile(ctx context.Context, n *config.Node) error {
	r := d.c.Replication
	content, err := pgconf.Passfile([]pgconf.PassEntry{{User: r.User, Password: r.Password.Reveal()}})
	if err != nil {
		return err
	}
	return d.write(ctx, n.Name, pgUser, d.c.PassfilePath(), content)
}

func (d *dockerRuntime) Start(ctx context.Context, n *config.Node) error {
	if running, _ := d.postmasterRunning(ctx, n); running {
		return nil
	}
	log := d.c.LogFile(n)
	if _, err := d.pg(ctx, n, nil, "pg_ctl", "-D", pgData, "-l", log, "-w", "-t", "60", "start"); err != nil {
		tail, _ := d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "tail", "-n", "20", log)
		return fmt.Errorf("%w\nlast lines of %s in %s:\n%s", err, log, d.eng.Name(n.Name), tail)
	}
	return nil
}

func (d *dockerRuntime) postmasterRunning(ctx context.Context, n *config.Node) (bool, error) {
	out, err := d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "sh", "-c", statusScript)
	return strings.Contains(out, "running"), err
}

func (d *dockerRuntime) Stop(ctx context.Context, n *config.Node, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	running, err := d.postmasterRunning(ctx, n)
	if err != nil || !running {
		return nil // no container, or no server in it: stopped
	}
	_, err = d.pg(ctx, n, nil, "pg_ctl", "-D", pgData, "-m", mode, "-w", "-t", "60", "stop")
	return err
}

func (d *dockerRuntime) Restart(ctx context.Context, n *config.Node) error {
	_, err := d.pg(ctx, n, nil, "pg_ctl", "-D", pgData, "-l", d.c.LogFile(n), "-m", "fast", "-w", "-t", "60", "restart")
	return err
}

func (d *dockerRuntime) Clone(ctx context.Context, n, primary *config.Node) error {
	if err := d.ensureNode(ctx, n); err != nil {
		return err
	}
	if _, err := d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "sh", "-c", `[ -z "$(ls -A "$0")" ]`, pgData); err != nil {
		return fmt.Errorf("clone into %s: its data directory is not empty; pgha does not overwrite data", n.Name)
	}
	if err := d.WritePassfile(ctx, n); err != nil {
		return err
	}
	host, port := d.c.PeerEndpoint(primary)
	args := []string{"-D", pgData, "-h", host, "-p", strconv.Itoa(port), "-U", d.c.Replication.User,
		"-X", "stream", "-c", "fast", "--no-password"}
	if n.Slot != "" {
		args = append(args, "-S", n.Slot)
	}
	env := []string{"PGPASSFILE=" + d.c.PassfilePath(), "PGAPPNAME=" + n.Name, "PGCONNECT_TIMEOUT=10"}
	env = append(env, d.c.LibpqTLS(n)...)
	if _, err := d.pgCancellable(ctx, n, env, "pg_basebackup", args...); err != nil {
		_, _ = d.eng.Exec(context.Background(), n.Name, pgUser, nil, nil, "find", pgData, "-mindepth", "1", "-delete")
		return err
	}
	return d.mark(ctx, n)
}

func (d *dockerRuntime) Destroy(ctx context.Context, n *config.Node, keepData bool) error {
	_ = d.Stop(ctx, n, "fast")
	if err := d.eng.RemoveContainer(ctx, n.Name); err != nil {
		return err
	}
	if keepData {
		return d.removeNetworkIfUnused(ctx)
	}
	if err := d.eng.RemoveVolume(ctx, n.Name); err != nil {
		return err
	}
	return d.removeNetworkIfUnused(ctx)
}

// removeNetworkIfUnused drops the network once no pgha container is left.
func (d *dockerRuntime) removeNetworkIfUnused(ctx context.Context) error {
	inv, err := d.eng.Observe(ctx)
	if err != nil || len(inv.Containers) > 0 {
		return err
	}
	return d.eng.RemoveNetwork(ctx)
}

// Replace recreates n's container from the configured image and network,
// keeping its volume (its data).
func (d *dockerRuntime) Replace(ctx context.Context, n *config.Node) error {
	if err := d.checkMajor(ctx, n); err != nil {
		return err
	}
	_ = d.Stop(ctx, n, "fast")
	if err := d.eng.RemoveContainer(ctx, n.Name); err != nil {
		return err
	}
	if err := d.ensureNode(ctx, n); err != nil {
		return err
	}
	return d.Start(ctx, n)
}

func (d *dockerRuntime) StartCatalog(ctx context.Context) error {
	cat := d.c.Catalog
	host, portS, err := net.SplitHostPort(cat.Address)
	if err != nil {
		return fmt.Errorf("catalog address %q: %w", cat.Address, err)
	}
	port, _ := strconv.Atoi(portS)
	dk := d.c.Runtime.Docker
	if _, err := d.eng.EnsureNetwork(ctx); err != nil {
		return err
	}
	if err := d.eng.EnsureVolume(ctx, redisNode); err != nil {
		return err
	}
	err = d.eng.EnsureContainer(ctx, docker.Spec{Node: redisNode, Role: "redis", Image: dk.RedisImage, Config: dk.RedisImage,
		Mount: redisDir, Port: redisPort, Bind: host, HostPort: port, Cmd: keeper(redisDir + "/redis.pid")})
	if err != nil {
		return err
	}
	// Redis listens where connections can come from: its address on the
	// cluster network (the published port on the configured bind address
	// leads there, and the nodes' network is the only other way in) and
	// loopback inside its container. Not on every address.
	ip, err := d.eng.Address(ctx, redisNode)
	if err != nil {
		return err
	}
	o := pgconf.RedisOptions{Bind: []string{ip, "127.0.0.1"}, Port: redisPort, Dir: redisDir,
		Password: cat.Password.Reveal(), Daemonize: true}
	t, err := redisTLS(d.c)
	if err != nil {
		return fmt.Errorf("start the managed catalog: %w", err)
	}
	if t != nil {
		f := d.c.RedisTLS()
		if _, err := d.eng.Exec(ctx, redisNode, "root", nil, nil, "sh", "-c", `umask 077; mkdir -p "$(dirname "$0")"`, f.Cert); err != nil {
			return fmt.Errorf("TLS directory in %s: %w", d.eng.Name(redisNode), err)
		}
		for _, w := range []struct {
			path string
			data []byte
		}{{f.Key, t.Key}, {f.Cert, t.Cert}, {f.CA, t.CA}} {
			if err := d.write(ctx, redisNode, "root", w.path, w.data); err != nil {
				return err
			}
		}
		o.TLS = &pgconf.RedisTLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA}
	}
	conf := pgconf.RedisConf(o)
	if err := d.write(ctx, redisNode, "root", redisDir+"/redis.conf.new", conf); err != nil {
		return err
	}
	// A running Redis is restarted when TLS was turned on (or off); its
	// appendonly file keeps every key.
	_, err = d.eng.Exec(ctx, redisNode, "root", nil, nil, "sh", "-c", `p=$0/redis.pid; c=$0/redis.conf
pid=; [ -f $p ] && kill -0 $(cat $p) 2>/dev/null && pid=$(cat $p)
tls() { grep -q '^tls-port ' "$1" 2>/dev/null && echo on; }
if [ -n "$pid" ] && [ "$(tls $c.new)" = "$(tls $c)" ]; then mv $c.new $c; exit 0; fi
mv $c.new $c
if [ -n "$pid" ]; then kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.1; done; fi
redis-server $c`, redisDir)
	if err != nil {
		var ee *docker.ExecError
		if errors.As(err, &ee) && ee.Code == 127 {
			return fmt.Errorf("image %s has no redis-server; set redis_image to a Redis image: %w", dk.RedisImage, err)
		}
		return fmt.Errorf("start redis in %s: %w", d.eng.Name(redisNode), err)
	}
	return nil
}

// RestartCatalog stops redis-server in its container (SIGTERM: it writes
// its appendonly file and exits) and starts it with a fresh redis.conf.
func (d *dockerRuntime) RestartCatalog(ctx context.Context) error {
	_, err := d.eng.Exec(ctx, redisNode, "root", nil, nil, "sh", "-c", `p=`+redisDir+`/redis.pid
if [ -f $p ] && kill $(cat $p) 2>/dev/null; then
  i=0; while [ -f $p ] && kill -0 $(cat $p) 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
fi
true`)
	if err != nil {
		return fmt.Errorf("stop redis in %s: %w", d.eng.Name(redisNode), err)
	}
	return d.StartCatalog(ctx)
}

func (d *dockerRuntime) DestroyCatalog(ctx context.Context, keepData bool) error {
	if err := d.eng.RemoveContainer(ctx, redisNode); err != nil {
		return err
	}
	if keepData {
		return d.removeNetworkIfUnused(ctx)
	}
	if err := d.eng.RemoveVolume(ctx, redisNode); err != nil {
		return err
	}
	return d.removeNetworkIfUnused(ctx)
}

// Prepare recreates a removed or stopped container around the node's volume.
func (d *dockerRuntime) Prepare(ctx context.Context, n *config.Node) error {
	return d.ensureNode(ctx, n)
}

// checkMajor refuses an image whose PostgreSQL major version differs from
// the data directory's, before anything is stopped: that is an upgrade
// (pg_upgrade), not a container replacement.
func (d *dockerRuntime) checkMajor(ctx context.Context, n *config.Node) error {
	image := d.c.Runtime.Docker.Image
	out, err := d.eng.Run(ctx, image, n.Name, volumeDir, "sh", "-c",
		"cat "+pgData+"/PG_VERSION; B=$("+docker.FindBinScript+"); \"$B/postgres\" --version")
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

func (d *dockerRuntime) ControlData(ctx context.Context, n *config.Node) (map[string]string, error) {
	if err := d.ensureNode(ctx, n); err != nil {
		return nil, err
	}
	out, err := d.pg(ctx, n, []string{"LC_ALL=C"}, "pg_controldata", "-D", pgData)
	if err != nil {
		return nil, err
	}
	return local.ParseControlData(out), nil
}

// Rewind connects pg_rewind to source as the superuser through a
// short-lived passfile in the node's volume.
func (d *dockerRuntime) Rewind(ctx context.Context, n, source *config.Node) (string, error) {
	if err := d.ensureNode(ctx, n); err != nil {
		return "", err
	}
	su := d.c.Postgres
	pf := volumeDir + "/rewind.pgpass"
	content, err := pgconf.Passfile([]pgconf.PassEntry{{User: su.Superuser, Password: su.Password.Reveal()}})
	if err != nil {
		return "", err
	}
	if err := d.write(ctx, n.Name, pgUser, pf, content); err != nil {
		return "", err
	}
	defer d.eng.Exec(context.Background(), n.Name, pgUser, nil, nil, "rm", "-f", pf)
	host, port := d.c.PeerEndpoint(source)
	conn := pgconf.Conninfo(pgconf.KV{Key: "host", Value: host}, pgconf.KV{Key: "port", Value: strconv.Itoa(port)},
		pgconf.KV{Key: "user", Value: su.Superuser}, pgconf.KV{Key: "dbname", Value: "postgres"}, pgconf.KV{Key: "connect_timeout", Value: "10"})
	report, err := d.pgCancellable(ctx, n, append([]string{"PGPASSFILE=" + pf}, d.c.LibpqTLS(n)...), "pg_rewind", "--target-pgdata", pgData, "--source-server", conn)
	if err != nil {
		return report, err
	}
	return report, d.mark(ctx, n) // pg_rewind copied the source's marker
}

// InstallTLS copies n's certificate, key and the CA into its volume,
// outside PGDATA, for the image's postgres user, through the engine (the
// files never touch a command line or the image).
func (d *dockerRuntime) InstallTLS(ctx context.Context, n *config.Node, cert, key, ca []byte) error {
	f := d.c.NodeTLS(n)
	if _, err := d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "sh", "-c", `umask 077; mkdir -p "$(dirname "$0")"`, f.Cert); err != nil {
		return fmt.Errorf("TLS directory in %s: %w", n.Name, err)
	}
	for _, w := range []struct {
		path string
		data []byte
	}{{f.Key, key}, {f.Cert, cert}, {f.CA, ca}} {
		if err := d.write(ctx, n.Name, pgUser, w.path, w.data); err != nil {
			return err
		}
	}
	return nil
}

// InstalledTLS reads n's installed certificate and CA (nil when absent
// or when the container does not run).
func (d *dockerRuntime) InstalledTLS(ctx context.Context, n *config.Node) (cert, ca []byte, err error) {
	f := d.c.NodeTLS(n)
	out, err := d.eng.Exec(ctx, n.Name, pgUser, nil, nil, "sh", "-c", `cat "$0" 2>/dev/null; echo "#pgha-split"; cat "$1" 2>/dev/null; true`, f.Cert, f.CA)
	if err != nil {
		return nil, nil, err
	}
	c, a, _ := strings.Cut(out, "#pgha-split")
	return []byte(c), []byte(a), nil
}

// Reload signals the server in n's container (pg_ctl reload).
func (d *dockerRuntime) Reload(ctx context.Context, n *config.Node) error {
	if running, _ := d.postmasterRunning(ctx, n); !running {
		return nil
	}
	_, err := d.pg(ctx, n, nil, "pg_ctl", "-D", pgData, "reload")
	return err
}

// MoveAside renames the data directory inside the node's volume (one
// filesystem: instant, nothing copied) and leaves an empty one, 0700, for
// the re-clone.
func (d *dockerRuntime) MoveAside(ctx context.Context, n *config.Node, stamp string) (string, error) {
	if err := d.Stop(ctx, n, "fast"); err != nil {
		return "", err
	}
	if err := d.ensureNode(ctx, n); err != nil {
		return "", err
	}
	aside := pgData + ".aside-" + stamp
	out, err := d.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", `set -e
if [ -e "$1" ]; then echo "$1 exists already" >&2; exit 1; fi
if [ -n "$(ls -A "$0" 2>/dev/null)" ]; then mv "$0" "$1"; echo moved; fi
mkdir -p "$0"; chown `+pgUser+`: "$0"; chmod 700 "$0"`, pgData, aside)
	if err != nil {
		return "", fmt.Errorf("move %s aside in %s: %w", pgData, d.eng.Name(n.Name), err)
	}
	if !strings.Contains(out, "moved") {
		return "", nil
	}
	return aside, nil
}

// RemoveAside deletes a set-aside directory inside the node's volume.
func (d *dockerRuntime) RemoveAside(ctx context.Context, n *config.Node, path string) error {
	if !local.IsAsideOf(pgData, path) {
		return fmt.Errorf("remove %s: not a set-aside data directory of %s", path, pgData)
	}
	if err := d.ensureNode(ctx, n); err != nil {
		return err
	}
	if err := d.checkOwned(ctx, n, path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if _, err := d.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", `set -e
[ -L "$0" ] && { echo "$0 is a symlink" >&2; exit 1; }
[ -d "$0" ] || exit 0
[ -f "$0/PG_VERSION" ] || [ -d "$0/base" ] || { echo "$0 does not look like a PostgreSQL data directory" >&2; exit 1; }
rm -rf -- "$0"`, path); err != nil {
		return fmt.Errorf("remove %s in %s: %w", path, d.eng.Name(n.Name), err)
	}
	return nil
}

// MarkFenced writes standby.signal when the node's container runs. A
// stopped or killed container restarts with its keeper only (pgha starts
// PostgreSQL by exec), so it cannot come back as a primary by itself; not
// starting it keeps a failover fast.
func (d *dockerRuntime) MarkFenced(ctx context.Context, n *config.Node) error {
	if running, err := d.postmasterRunning(ctx, n); err != nil && !running {
		return nil // no running container to exec in
	}
	return d.SetStandby(ctx, n, true)
}

// BaseBackup runs pg_basebackup inside n's container against n itself
// and streams the tar to w through the exec stream: nothing is staged in
// the container, and the image needs nothing beyond PostgreSQL's own
// client programs.
func (d *dockerRuntime) BaseBackup(ctx context.Context, n *config.Node, w io.Writer) (string, error) {
	if err := d.WritePassfile(ctx, n); err != nil {
		return "", err
	}
	path, err := d.bin(ctx, n, "pg_basebackup")
	if err != nil {
		return "", err
	}
	host, port := d.c.PeerEndpoint(n) // the address pg_hba.conf lets replication in from
	env := []string{"PGPASSFILE=" + d.c.PassfilePath(), "PGAPPNAME=pgha-backup", "PGCONNECT_TIMEOUT=10"}
	env = append(env, d.c.LibpqTLS(n)...)
	report, err := d.eng.ExecStream(ctx, n.Name, pgUser, env, w, path, "-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast",
		"--no-password", "-v", "-h", host, "-p", strconv.Itoa(port), "-U", d.c.Replication.User)
	if err != nil {
		return report, fmt.Errorf("pg_basebackup on %s: %w", n.Name, err)
	}
	return report, nil
}

// superPassfile writes the superuser's credentials into a container,
// 0600 for the postgres user, and returns its path and a remover.
func (d *dockerRuntime) superPassfile(ctx context.Context, node string) (string, func(), error) {
	path := "/var/lib/postgresql/.pgha-pgpass-superuser"
	content, err := pgconf.Passfile([]pgconf.PassEntry{{User: d.c.Postgres.Superuser, Password: d.c.Postgres.Password.Reveal()}})
	if err != nil {
		return "", nil, err
	}
	if err := d.write(ctx, node, pgUser, path, content); err != nil {
		return "", nil, err
	}
	return path, func() { _, _ = d.eng.Exec(context.Background(), node, pgUser, nil, nil, "rm", "-f", path) }, nil
}

// DumpAll runs the image's pg_dumpall inside n's container and streams
// the script out through the exec stream.
func (d *dockerRuntime) DumpAll(ctx context.Context, n *config.Node, w io.Writer) error {
	pf, done, err := d.superPassfile(ctx, n.Name)
	if err != nil {
		return err
	}
	defer done()
	path, err := d.bin(ctx, n, "pg_dumpall")
	if err != nil {
		return err
	}
	host, port := d.c.PeerEndpoint(n)
	env := []string{"PGPASSFILE=" + pf, "PGAPPNAME=pgha-backup", "PGCONNECT_TIMEOUT=10"}
	env = append(env, d.c.LibpqTLS(n)...)
	if stderr, err := d.eng.ExecStream(ctx, n.Name, pgUser, env, w, path, "-h", host, "-p", strconv.Itoa(port), "-U", d.c.Postgres.Superuser, "--no-password"); err != nil {
		return fmt.Errorf("pg_dumpall on %s: %w\n%s", n.Name, err, stderr)
	}
	return nil
}
