package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Start starts the server with pg_ctl and waits until it accepts
// connections. On failure the error carries the end of the server log.
func (r *Runtime) Start(ctx context.Context, dir, logFile string) error {
	if err := r.prepareLog(logFile); err != nil {
		return err
	}
	cmd := r.command(ctx, "pg_ctl", "-D", dir, "-l", logFile, "-w", "-t", "60", "start")
	if err := run(cmd, "start "+dir); err != nil {
		return fmt.Errorf("%w%s", err, logTail(logFile, 20))
	}
	return nil
}

// Stop stops the server (mode fast unless told); a stopped server is fine.
func (r *Runtime) Stop(ctx context.Context, dir, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	if _, ok := postmasterPID(dir); !ok {
		return nil
	}
	return run(r.command(ctx, "pg_ctl", "-D", dir, "-m", mode, "-w", "-t", "60", "stop"), "stop "+dir)
}

// Restart restarts the server (fast shutdown) for settings that need it.
func (r *Runtime) Restart(ctx context.Context, dir, logFile string) error {
	if err := r.prepareLog(logFile); err != nil {
		return err
	}
	cmd := r.command(ctx, "pg_ctl", "-D", dir, "-l", logFile, "-m", "fast", "-w", "-t", "60", "restart")
	if err := run(cmd, "restart "+dir); err != nil {
		return fmt.Errorf("%w%s", err, logTail(logFile, 20))
	}
	return nil
}

func (r *Runtime) prepareLog(logFile string) error {
	dir := filepath.Dir(logFile)
	if err := r.mkdirOwned(dir, 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("open log %s: %w", logFile, err)
	}
	f.Close()
	return r.chown(logFile)
}

// logTail returns the last n lines of a log, formatted for an error.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("\nlast lines of %s:\n  %s", path, strings.Join(lines, "\n  "))
}

// CloneSource says where and how a standby is cloned from.
type CloneSource struct {
	Host     string
	Port     int
	User     string
	Slot     string // "" = no slot
	Passfile string
	AppName  string
}

// Clone copies the primary into dir with pg_basebackup, streaming WAL
// through the node's slot. dir must be missing or empty: Clone never
// overwrites data. A failed clone leaves the directory empty again.
func (r *Runtime) Clone(ctx context.Context, dir string, src CloneSource) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("clone into %s: the directory is not empty; pgha does not overwrite data", dir)
	}
	if err := r.CreateDataDir(dir); err != nil {
		return err
	}
	args := []string{"-D", dir, "-h", src.Host, "-p", fmt.Sprint(src.Port), "-U", src.User,
		"-X", "stream", "-c", "fast", "--no-password"}
	if src.Slot != "" {
		args = append(args, "-S", src.Slot)
	}
	cmd := r.command(ctx, "pg_basebackup", args...)
	cmd.Env = append(cmd.Env, "PGPASSFILE="+src.Passfile, "PGAPPNAME="+src.AppName, "PGCONNECT_TIMEOUT=10")
	if err := run(cmd, fmt.Sprintf("pg_basebackup from %s:%d", src.Host, src.Port)); err != nil {
		r.emptyDir(dir)
		return err
	}
	return nil
}

// emptyDir removes what a failed clone wrote, keeping the directory.
func (r *Runtime) emptyDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
