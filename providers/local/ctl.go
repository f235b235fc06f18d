package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/internal/proc"
)

// ctlTimeout is pg_ctl's own wait (-t), in seconds: long enough for crash
// recovery of a busy node, short enough that an apply reports a stuck one.
const ctlTimeout = "60"

// Start starts the node's server with pg_ctl and waits until it accepts
// connections. A server already running there is left alone, so that a
// re-run of an interrupted apply converges. On failure the error carries
// the end of the server log, where PostgreSQL says why.
func (r *Runtime) Start(ctx context.Context, dir, logFile string) error {
	dir, err := absPath("start", dir)
	if err != nil {
		return err
	}
	logFile, err = absPath("start "+dir+": log file", logFile)
	if err != nil {
		return err
	}
	if _, running, _ := r.postmaster(dir); running {
		return nil
	}
	if err := r.prepareLog(logFile); err != nil {
		return fmt.Errorf("start %s: %w", dir, err)
	}
	if err := awaitDeadPostmaster(ctx, dir); err != nil {
		return fmt.Errorf("start %s: %w", dir, err)
	}
	out, err := output(r.command(ctx, "pg_ctl", "-D", dir, "-l", logFile, "-w", "-t", ctlTimeout, "start"))
	if err != nil {
		return fmt.Errorf("start %s: %w%s%s", dir, err, withOutput(out), logTail(logFile, 20))
	}
	return nil
}

// Stop stops the node's server and waits for it to exit; mode is pg_ctl's
// (smart, fast, immediate; "" = fast). A stopped server is no error. The
// running check comes first because pg_ctl trusts postmaster.pid: with a
// stale file it would signal whatever process now has that pid.
func (r *Runtime) Stop(ctx context.Context, dir, mode string) error {
	dir, err := absPath("stop", dir)
	if err != nil {
		return err
	}
	switch mode {
	case "":
		mode = "fast"
	case "smart", "fast", "immediate":
	default:
		return fmt.Errorf("stop %s: unknown shutdown mode %q (smart, fast or immediate)", dir, mode)
	}
	pm, running, _ := r.postmaster(dir)
	if !running {
		return nil
	}
	pid := pm.PID
	if mode == "immediate" {
		return r.stopImmediate(ctx, dir, pid)
	}
	out, err := output(r.command(ctx, "pg_ctl", "-D", dir, "-m", mode, "-w", "-t", ctlTimeout, "stop"))
	if err != nil {
		if _, running, _ := r.postmaster(dir); !running {
			return nil // it stopped on its own meanwhile
		}
		return fmt.Errorf("stop %s (mode %s): %w%s", dir, mode, err, withOutput(out))
	}
	return nil
}

// Restart stops the server (fast) and starts it again, for settings that
// take effect only at start. A stopped server is just started.
func (r *Runtime) Restart(ctx context.Context, dir, logFile string) error {
	dir, err := absPath("restart", dir)
	if err != nil {
		return err
	}
	logFile, err = absPath("restart "+dir+": log file", logFile)
	if err != nil {
		return err
	}
	if _, running, _ := r.postmaster(dir); !running {
		return r.Start(ctx, dir, logFile)
	}
	if err := r.prepareLog(logFile); err != nil {
		return fmt.Errorf("restart %s: %w", dir, err)
	}
	out, err := output(r.command(ctx, "pg_ctl", "-D", dir, "-l", logFile, "-m", "fast", "-w", "-t", ctlTimeout, "restart"))
	if err != nil {
		return fmt.Errorf("restart %s: %w%s%s", dir, err, withOutput(out), logTail(logFile, 20))
	}
	return nil
}

// prepareLog creates the log's directory (0700, owned by RunAs, parents
// 0755) and the file itself, owned by RunAs: pg_ctl opens the log as RunAs
// and cannot create it in a directory pgha made as root.
func (r *Runtime) prepareLog(logFile string) error {
	dir := filepath.Dir(logFile)
	if _, err := os.Stat(dir); err != nil {
		if err := r.ensurePrivateDir(dir); err != nil {
			return fmt.Errorf("log directory: %w", err)
		}
	} else if err := r.checkTraversable(dir); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open log %s: %w", logFile, err)
	}
	f.Close()
	return r.chown(logFile)
}

// Reload makes a running server re-read its configuration, pg_hba.conf
// and TLS files (pg_ctl reload, a SIGHUP); a stopped one has nothing to do.
func (r *Runtime) Reload(ctx context.Context, dir string) error {
	dir, err := absPath("reload", dir)
	if err != nil {
		return err
	}
	if _, running, _ := r.postmaster(dir); !running {
		return nil
	}
	if out, err := output(r.command(ctx, "pg_ctl", "-D", dir, "reload")); err != nil {
		return fmt.Errorf("reload %s: %w%s", dir, err, withOutput(out))
	}
	return nil
}

// reapWait bounds how long Start waits for a crashed postmaster's parent
// to reap it.
const reapWait = 5 * time.Second

// awaitDeadPostmaster prepares a start after a crash: a postmaster killed
// a moment ago stays a zombie until its parent (often PID 1, which may
// reap late) reaps it, and PostgreSQL, which asks kill(pid, 0), then
// refuses to start ("lock file postmaster.pid already exists"), so that a
// restart in place right after kill -9 failed. It waits for the zombie to
// go, so that PostgreSQL's own checks (the shared memory its orphaned
// backends may still hold) run on the real pid file; a zombie still there
// after reapWait runs nothing, and its stale file goes, as before a rewind.
func awaitDeadPostmaster(ctx context.Context, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	pm, err := pgdata.ParsePostmaster(string(b))
	if err != nil || pm.PID == 0 || alive(pm.PID) {
		return nil
	}
	if shmemUnattached(string(b)) {
		// PostgreSQL's own check of the old shared memory, done here:
		// no process of the dead server holds it, so the zombie (or
		// nothing) is all the pid file names. Waiting for the reap cost
		// a rejoin without pg_rewind ~1 s here (PID 1 reaps late).
		return clearDeadPidfile(dir)
	}
	deadline := time.Now().Add(reapWait)
	for syscall.Kill(pm.PID, 0) == nil && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return clearDeadPidfile(dir)
}

// shmemUnattached reports whether the shared memory segment a
// postmaster.pid names (its seventh line: key and id) is gone or attached
// by no process: what PostgreSQL checks before it starts over an old pid
// file (PGSharedMemoryIsInUse), so that no orphaned backend of a crashed
// server lives on beside a new one. False when that cannot be told (no
// such line, no permission to look).
func shmemUnattached(pidfile string) bool {
	lines := strings.Split(pidfile, "\n")
	if len(lines) < 7 {
		return false
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return false
	}
	id, err := strconv.Atoi(f[1])
	if err != nil || id < 0 {
		return false
	}
	var desc unix.SysvShmDesc
	_, err = unix.SysvShmCtl(id, unix.IPC_STAT, &desc)
	switch {
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EIDRM):
		return true // removed
	case err != nil:
		return false
	}
	return desc.Nattch == 0
}

// immediateWait is how long an immediate stop waits for the server to
// act on SIGQUIT before it kills it.
const immediateWait = 3 * time.Second

// stopImmediate is pg_ctl's immediate stop bounded in time: a server that
// does not act on SIGQUIT within immediateWait (a stalled disk) is
// stopped (SIGSTOP: it forks nothing more) and killed with SIGKILL, it
// and every process under it at once, so that no backend lives on to
// acknowledge a write. A postmaster already stopped by SIGSTOP (a frozen
// host) cannot act on SIGQUIT: it is killed at once. Each child of a
// postmaster leads a process group of its own (PostgreSQL calls setsid
// in every child), so killing the postmaster's group, as this did, left
// a paused server's backends alive and paused, holding its shared memory
// (its next start failed: "pre-existing shared memory block is still in
// use"). A fence before a promotion waited pg_ctl's 60 s for a paused
// primary before any of this. Immediate is a crash either way: the next
// start recovers from WAL.
func (r *Runtime) stopImmediate(ctx context.Context, dir string, pid int) error {
	if st, err := proc.Read(pid); err != nil || st.State != 'T' {
		// The server's processes, read before it stops: pg_ctl returns
		// once the postmaster is gone, when a child may still be exiting
		// (seen: one in state R right after). Stopped means all of them.
		tree := proc.Tree(pid)
		wctx, cancel := context.WithTimeout(ctx, immediateWait)
		wait := strconv.Itoa(int(immediateWait / time.Second))
		_, err := output(r.command(wctx, "pg_ctl", "-D", dir, "-m", "immediate", "-w", "-t", wait, "stop"))
		cancel()
		if err == nil {
			return waitExited(ctx, dir, pid, tree)
		}
	}
	if _, running, _ := r.postmaster(dir); !running {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	tree := proc.Tree(pid)
	for _, p := range tree {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && p == pid && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop %s (mode immediate): kill postmaster %d: %w", dir, pid, err)
		}
	}
	return waitExited(ctx, dir, pid, tree)
}

// waitExited waits until every process of tree, the server of postmaster
// pid, has exited, for 10 s at most.
func waitExited(ctx context.Context, dir string, pid int, tree []int) error {
	for deadline := time.Now().Add(10 * time.Second); ; {
		var left []int
		for _, p := range tree {
			if st, err := proc.Read(p); err == nil && !st.Exited() {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stop %s (mode immediate): processes %v of postmaster %d still run 10 s after it was stopped", dir, left, pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
