package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/state"
)

// Observe records what the file system and the process table say about the
// node's data directory. It starts no subprocess and connects to nothing:
// it runs for every node on every `pgha plan`. Surprises that stop pgha from
// acting on the directory go to RuntimeError; a stale postmaster.pid after
// a crash is no surprise (pg_ctl start copes) and only means not running.
func (r *Runtime) Observe(n *state.Node) {
	n.DirExists, n.Initialized, n.StandbySignal, n.Running, n.PID, n.PMStatus, n.RuntimeError = false, false, false, false, 0, "", ""
	dir, err := absPath("data directory", n.DataDir)
	if err != nil {
		n.RuntimeError = err.Error()
		return
	}
	n.Aside = FindAside(dir)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return
	case err != nil:
		n.RuntimeError = fmt.Sprintf("data directory: %v", err)
		return
	case !fi.IsDir():
		n.RuntimeError = fmt.Sprintf("data directory %s is not a directory", dir)
		return
	}
	n.DirExists = true
	var problems []string
	note := func(s string) { problems = append(problems, s) }

	n.Initialized, err = fileExists(filepath.Join(dir, "PG_VERSION"))
	if err != nil {
		note(err.Error())
	}
	n.StandbySignal, err = fileExists(filepath.Join(dir, "standby.signal"))
	if err != nil {
		note(err.Error())
	}
	pm, running, problem := r.postmaster(dir)
	if problem != "" {
		note(problem)
	}
	if running {
		n.Running, n.PID, n.PMStatus = true, pm.PID, pm.Status
	}
	if !n.Initialized && !running {
		if empty, err := isEmpty(dir); err != nil {
			note(fmt.Sprintf("read %s: %v", dir, err))
		} else if !empty {
			note(fmt.Sprintf("%s holds files but no PostgreSQL cluster (no PG_VERSION); pgha will not initialise or clone over them: move them away", dir))
		}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && r.switchUser && int(st.Uid) != r.uid {
		note(fmt.Sprintf("%s is owned by %s, not %s, the user PostgreSQL runs as; run `chown -R %s: %s`", dir, ownerName(fi), r.user, r.user, dir))
	}
	n.RuntimeError = strings.Join(problems, "; ")
}

// postmaster reads postmaster.pid and decides whether this data
// directory's server is running. The pid must be alive, look like
// PostgreSQL in /proc/<pid>/cmdline and, where /proc lets us see it, have
// the data directory as its working directory (the postmaster chdirs
// there): after a reboot or crash the pid may belong to anything, even to
// another cluster's postmaster. problem is set when the stale file will stop
// PostgreSQL from starting.
func (r *Runtime) postmaster(dir string) (pm pgdata.Postmaster, running bool, problem string) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return pm, false, ""
	}
	if err != nil {
		return pm, false, fmt.Sprintf("read postmaster.pid: %v", err)
	}
	pm, err = pgdata.ParsePostmaster(string(b))
	if err != nil {
		return pm, false, fmt.Sprintf("%s: %v", filepath.Join(dir, "postmaster.pid"), err)
	}
	pid := pm.PID
	if pid == 0 {
		return pm, false, "" // a postmaster is writing it this instant, or died doing so
	}
	if !alive(pid) {
		return pm, false, ""
	}
	if isPostgres(pid) && sameDir(pid, dir) {
		return pm, true, ""
	}
	// PostgreSQL ignores a stale pid file only when the pid is dead or
	// belongs to another OS user; a live process of its own user blocks it.
	if owner, ok := processOwner(pid); ok && owner == r.uid {
		return pm, false, fmt.Sprintf("stale %s names pid %d, a live process that is not this node's server; "+
			"PostgreSQL will refuse to start until the file is removed", filepath.Join(dir, "postmaster.pid"), pid)
	}
	return pm, false, ""
}

// isPostgres reports whether pid's command line is a PostgreSQL server's:
// the postmaster keeps its argv ("/usr/lib/postgresql/15/bin/postgres -D
// ..."); its children rewrite theirs to "postgres: ...".
func isPostgres(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return false
	}
	s := string(b)
	if strings.HasPrefix(s, "postgres:") || strings.HasPrefix(s, "postmaster:") {
		return true
	}
	argv0, _, _ := strings.Cut(s, "\x00")
	argv0, _, _ = strings.Cut(argv0, " ")
	switch filepath.Base(argv0) {
	case "postgres", "postmaster":
		return true
	}
	return false
}

// sameDir reports whether pid works in dir; true when /proc does not say.
func sameDir(pid int, dir string) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		want = dir
	}
	return strings.TrimSuffix(cwd, " (deleted)") == want
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("check %s: %w", path, err)
	}
}
