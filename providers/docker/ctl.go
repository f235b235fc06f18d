package docker

import (
	"context"
	"fmt"
	"strings"
)

// ctlTimeout is pg_ctl's own wait (-t), in seconds, as on the local runtime.
const ctlTimeout = "60"

// Running reports whether a postmaster runs in the node's container (its
// postmaster.pid names a live process). An error means the container
// could not be asked (missing or stopped).
func (r *Runtime) Running(ctx context.Context, n Node) (bool, error) {
	out, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", statusScript)
	return strings.Contains(out, "running"), err
}

// Start starts the node's server with pg_ctl and waits until it accepts
// connections; a running one is left alone. On failure the error carries
// the end of the server log, where PostgreSQL says why.
func (r *Runtime) Start(ctx context.Context, n Node, logFile string) error {
	if running, _ := r.Running(ctx, n); running {
		return nil
	}
	if _, err := r.pg(ctx, n.Name, nil, "pg_ctl", "-D", PGData, "-l", logFile, "-w", "-t", ctlTimeout, "start"); err != nil {
		tail, _ := r.eng.Exec(ctx, n.Name, User, nil, nil, "tail", "-n", "20", logFile)
		return fmt.Errorf("%w\nlast lines of %s in %s:\n%s", err, logFile, r.Name(n.Name), tail)
	}
	return nil
}

// Stop stops the node's server and waits for it to exit; mode is
// pg_ctl's ("" = fast). A stopped server, or a missing container, is no
// error.
func (r *Runtime) Stop(ctx context.Context, n Node, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	running, err := r.Running(ctx, n)
	if err != nil || !running {
		return nil // no container, or no server in it: stopped
	}
	if mode == "immediate" {
		return r.stopImmediate(ctx, n)
	}
	_, err = r.pg(ctx, n.Name, nil, "pg_ctl", "-D", PGData, "-m", mode, "-w", "-t", ctlTimeout, "stop")
	return err
}

// immediateWait is how long an immediate stop waits for the server to
// act on SIGQUIT before it kills it, in seconds.
const immediateWait = "3"

// stopImmediate is pg_ctl's immediate stop bounded in time, as on the
// local runtime: a server that does not act on SIGQUIT within
// immediateWait (its processes stopped by SIGSTOP, a stalled disk) gets
// SIGKILL, its whole process group (pg_ctl starts the postmaster with
// setsid), so that a fence before a promotion neither waits pg_ctl's 60 s
// nor leaves a backend that could still acknowledge a write.
func (r *Runtime) stopImmediate(ctx context.Context, n Node) error {
	if _, err := r.pg(ctx, n.Name, nil, "pg_ctl", "-D", PGData, "-m", "immediate", "-w", "-t", immediateWait, "stop"); err == nil {
		return nil
	}
	if running, _ := r.Running(ctx, n); !running {
		return nil
	}
	_, err := r.eng.Exec(ctx, n.Name, "root", nil, nil, "sh", "-c", `p=$(head -n 1 $0/postmaster.pid 2>/dev/null)
[ -n "$p" ] || exit 0
kill -KILL -- -$p 2>/dev/null || kill -KILL $p 2>/dev/null
i=0; while kill -0 $p 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done`, PGData)
	if err != nil {
		return fmt.Errorf("stop %s (mode immediate): kill its postmaster: %w", r.Name(n.Name), err)
	}
	if running, _ := r.Running(ctx, n); running {
		return fmt.Errorf("stop %s (mode immediate): the postmaster still runs 10 s after SIGKILL", r.Name(n.Name))
	}
	return nil
}

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
