package docker

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/pgha/pgha/internal/pgconf"
)

// ctlTimeout is pg_ctl's own wait (-t), in seconds, as on the local runtime.
const ctlTimeout = "60"

// Running reports whether a postmaster runs in the node's container (its
// postmaster.pid names a live process). An error means the container
// could not be asked (missing or stopped).
func (r *Runtime) Running(ctx context.Context, n Node) (bool, error) {
	out, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", statusScript)
	return parseStatus(out).running, err
}

// Start starts the node's server with pg_ctl and waits until it accepts
// connections; a running one is left alone. On failure the error carries
// the end of the server log, where PostgreSQL says why. The check and
// pg_ctl are one exec (startScript): a restart in place waits for each.
func (r *Runtime) Start(ctx context.Context, n Node, logFile string) error {
	path, err := r.bin(ctx, n.Name, "pg_ctl")
	if err != nil {
		return err
	}
	if out, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", startScript, path, PGData, logFile, ctlTimeout); err != nil {
		tail, _ := r.eng.Exec(ctx, n.Name, User, nil, nil, "tail", "-n", "20", logFile)
		return fmt.Errorf("pg_ctl start on %s: %w %s\nlast lines of %s in %s:\n%s", n.Name, err, strings.TrimSpace(out), logFile, r.Name(n.Name), tail)
	}
	return nil
}

// startScript: $0 pg_ctl, $1 the data directory, $2 the log, $3 pg_ctl's
// timeout. A server runs when its postmaster.pid names a live process,
// as Running says.
const startScript = `p=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
[ -n "$p" ] && kill -0 "$p" 2>/dev/null && exit 0
exec "$0" -D "$1" -l "$2" -w -t "$3" start`

// StartSpec is what ConfigureAndStart writes before it starts a server.
type StartSpec struct {
	Files    map[string][]byte // private files (TLS), path → content
	Settings map[string]string // pgha.conf, as Configure
	HBA      []string          // pg_hba.conf, as Configure
	Standby  bool              // standby.signal written, else removed
	LogFile  string
}

// ConfigureAndStart is WritePrivateFiles, Configure, SetStandby and Start
// in one exec: a restart in place waited for each of them (four to nine
// execs before this, 60-250 ms each on a loaded machine). A running
// server gets the files and is left running, as Start leaves it.
func (r *Runtime) ConfigureAndStart(ctx context.Context, n Node, o StartSpec) error {
	conf, err := pgconf.Settings(o.Settings)
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	hbaText, err := pgconf.HBA(o.HBA)
	if err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	paths := make([]string, 0, len(o.Files))
	for p := range o.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var files []file
	for _, p := range paths {
		files = append(files, file{p, o.Files[p]})
	}
	files = append(files, file{PGData + "/pgha.conf", conf}, file{PGData + "/pg_hba.conf", hbaText})
	pgctl, err := r.bin(ctx, n.Name, "pg_ctl")
	if err != nil {
		return err
	}
	standby := "off"
	if o.Standby {
		standby = "on"
	}
	err = r.writeFiles(ctx, n.Name, User, files, configureStartScript,
		pgconf.IncludeLine, PGData+"/postgresql.conf", standby, PGData+"/standby.signal", pgctl, PGData, o.LogFile, ctlTimeout)
	if err != nil {
		tail, _ := r.eng.Exec(ctx, n.Name, User, nil, nil, "tail", "-n", "20", o.LogFile)
		return fmt.Errorf("configure and start %s: %w\nlast lines of %s in %s:\n%s", n.Name, err, o.LogFile, r.Name(n.Name), tail)
	}
	return nil
}

// configureStartScript runs after writeFiles put the files in place:
// $1 the include line and $2 postgresql.conf (Configure), $3 on or off
// and $4 standby.signal (SetStandby), $5 pg_ctl, $6 the data directory,
// $7 the log, $8 pg_ctl's timeout (Start, startScript). pg_ctl runs
// under the engine's usual umask, not writeFiles' 077.
const configureStartScript = `grep -qxF "$1" "$2" || echo "$1" >> "$2" || exit 1
if [ "$3" = on ]; then touch "$4"; else rm -f "$4"; fi || exit 1
umask 022
p=$(head -n 1 "$6/postmaster.pid" 2>/dev/null)
[ -n "$p" ] && kill -0 "$p" 2>/dev/null && exit 0
exec "$5" -D "$6" -l "$7" -w -t "$8" start`

// Stop stops the node's server and waits for it to exit; mode is
// pg_ctl's ("" = fast). A stopped server, or a missing container, is no
// error.
func (r *Runtime) Stop(ctx context.Context, n Node, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	if mode == "immediate" {
		return r.stopImmediate(ctx, n) // it checks what runs itself
	}
	running, err := r.Running(ctx, n)
	if err != nil || !running {
		return nil // no container, or no server in it: stopped
	}
	_, err = r.pg(ctx, n.Name, nil, "pg_ctl", "-D", PGData, "-m", mode, "-w", "-t", ctlTimeout, "stop")
	return err
}

// immediateWait is how long an immediate stop waits for the server to
// act on SIGQUIT before it kills it, in seconds.
const immediateWait = "3"

// stopImmediate is an immediate stop bounded in time, as on the local
// runtime, in one exec: the postmaster gets SIGQUIT (what pg_ctl -m
// immediate sends) and immediateWait to act on it; then it is stopped
// (SIGSTOP: it forks nothing more) and it and every process under it get
// SIGKILL at once, so that a fence before a promotion neither waits
// pg_ctl's 60 s nor leaves a backend that could still acknowledge a
// write. Each child of a postmaster leads a process group of its own
// (PostgreSQL calls setsid in every child), so killing the postmaster's
// group, as before, left the backends of a paused server alive, paused.
// A postmaster already stopped by SIGSTOP (a frozen host, a paused
// container) cannot act on SIGQUIT: it is killed at once. The script
// returns once none of those processes is left. Immediate is a crash
// either way: the next start recovers from WAL.
//
// It was pg_ctl, a check, the kill and another check (four docker
// execs, and the 3 s wait even for a paused server): most of the 14 s
// TestDockerWatch measured from a failover decision to its end.
func (r *Runtime) stopImmediate(ctx context.Context, n Node) error {
	out, err := r.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", stopImmediateScript, PGData, immediateWait)
	if err != nil {
		if running, rerr := r.eng.ContainerRunning(ctx, n.Name); rerr == nil && !running {
			return nil // no container, or a stopped one: no server runs
		}
		return fmt.Errorf("stop %s (mode immediate): %w %s", r.Name(n.Name), err, strings.TrimSpace(out))
	}
	return nil
}

// stopImmediateScript: $0 the data directory, $1 the seconds SIGQUIT is
// given. The postmaster.pid's pid counts only while it is a postgres
// process (a stale file may name another one). A zombie counts as gone.
const stopImmediateScript = `p=$(head -n 1 "$0/postmaster.pid" 2>/dev/null)
[ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -q postgres "/proc/$p/cmdline" 2>/dev/null || exit 0
state() { s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0; s=${s##*) }; echo "${s%% *}"; }
alive() { st=$(state "$1"); [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]; }
if [ "$(state "$p")" != T ]; then
  kill -QUIT "$p" 2>/dev/null
  i=0; while alive "$p" && [ $i -lt $(($1 * 10)) ]; do sleep 0.1; i=$((i+1)); done
fi
alive "$p" || exit 0
kill -STOP "$p" 2>/dev/null
tree=$(for f in /proc/[0-9]*/stat; do s=$(cat "$f" 2>/dev/null) || continue; echo "${s%% *} ${s##*) }"; done |
  awk -v r="$p" '{ pp[$1] = $3 } END { q[1] = r; n = 1; for (i = 1; i <= n; i++) for (c in pp) if (pp[c] == q[i]) q[++n] = c; for (i = 1; i <= n; i++) printf "%s ", q[i] }')
kill -KILL $tree 2>/dev/null
i=0
while [ $i -lt 100 ]; do
  left=""; for x in $tree; do alive "$x" && left="$left $x"; done
  [ -z "$left" ] && exit 0
  sleep 0.1; i=$((i+1))
done
echo "processes$left of postmaster $p still run 10 s after SIGKILL"; exit 1
`

// Restart stops the server (fast) and starts it again, for settings that
// take effect only at start.
func (r *Runtime) Restart(ctx context.Context, n Node, logFile string) error {
	_, err := r.pg(ctx, n.Name, nil, "pg_ctl", "-D", PGData, "-l", logFile, "-m", "fast", "-w", "-t", ctlTimeout, "restart")
	return err
}

// Reload makes a running server re-read its configuration, pg_hba.conf
// and TLS files (pg_ctl reload); a stopped one has nothing to do. It works
// when pgha cannot log in (a certificate pgha does not trust yet).
func (r *Runtime) Reload(ctx context.Context, n Node) error {
	if running, _ := r.Running(ctx, n); !running {
		return nil
	}
	_, err := r.pg(ctx, n.Name, nil, "pg_ctl", "-D", PGData, "reload")
	return err
}
