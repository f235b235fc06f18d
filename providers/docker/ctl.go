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
	_, err = r.pg(ctx, n.Name, nil, "pg_ctl", "-D", PGData, "-m", mode, "-w", "-t", ctlTimeout, "stop")
	return err
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
