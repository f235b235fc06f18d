package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgha/pgha/state"
)

// Observe records what the file system and the process table say about the
// node's data directory. It starts no subprocess: it is on plan's hot path.
func (r *Runtime) Observe(n *state.Node) {
	dir := n.DataDir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return
	case err != nil:
		n.RuntimeError = err.Error()
		return
	case !fi.IsDir():
		n.RuntimeError = dir + " is not a directory"
		return
	}
	n.DirExists = true
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		n.Initialized = true
	} else if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		n.RuntimeError = fmt.Sprintf("%s is not empty but holds no PostgreSQL data directory (no PG_VERSION); move its files away", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "standby.signal")); err == nil {
		n.StandbySignal = true
	}
	n.PID, n.Running = postmasterPID(dir)
}

// postmasterPID reads postmaster.pid and checks that the process is alive
// and is a PostgreSQL server, so a stale pid file never counts as running.
func postmasterPID(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	exe := filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0])
	if exe != "postgres" && exe != "postmaster" && !strings.HasPrefix(string(cmdline), "postgres:") {
		return 0, false
	}
	return pid, true
}

// CreateDataDir makes an empty data directory owned by RunAs, mode 0700.
// It first checks that RunAs can reach it: a root-only parent is the most
// common reason a fresh cluster fails to start.
func (r *Runtime) CreateDataDir(dir string) error {
	if err := r.checkReachable(filepath.Dir(dir)); err != nil {
		return err
	}
	return r.mkdirOwned(dir, 0o700)
}

// checkReachable walks up from dir and fails on the first existing
// directory RunAs cannot traverse, naming the chmod that fixes it.
func (r *Runtime) checkReachable(dir string) error {
	if r.uid < 0 {
		return nil
	}
	var existing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			existing = append(existing, p)
		}
		if p == "/" || p == "." {
			break
		}
	}
	sort.Slice(existing, func(i, j int) bool { return len(existing[i]) < len(existing[j]) })
	for _, p := range existing {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 || (int(st.Uid) == r.uid && mode&0o100 != 0) || (int(st.Gid) == r.gid && mode&0o010 != 0)
		if !ok {
			return fmt.Errorf("the %s user cannot enter %s (mode %o); run `chmod o+x %s` or choose another data_dir", r.runAs, p, mode, p)
		}
	}
	return nil
}

// RemoveDataDir deletes a data directory, refusing while a server runs in it.
func (r *Runtime) RemoveDataDir(dir string) error {
	if pid, ok := postmasterPID(dir); ok {
		return fmt.Errorf("remove %s: a server (pid %d) is running in it; stop it first", dir, pid)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// InitDB initialises a data directory with data checksums (so pg_rewind
// can later rejoin an old primary) and scram authentication. The password
// goes through a temporary file, never the command line.
func (r *Runtime) InitDB(ctx context.Context, dir, superuser, password string) error {
	pw, err := os.CreateTemp(filepath.Dir(dir), ".pgha-pw-*")
	if err != nil {
		return fmt.Errorf("initdb %s: %w", dir, err)
	}
	defer os.Remove(pw.Name())
	_, err = pw.WriteString(password + "\n")
	pw.Close()
	if err != nil {
		return fmt.Errorf("initdb %s: %w", dir, err)
	}
	if err := os.Chmod(pw.Name(), 0o600); err != nil {
		return err
	}
	if err := r.chown(pw.Name()); err != nil {
		return err
	}
	cmd := r.command(ctx, "initdb", "-D", dir, "-U", superuser, "--pwfile", pw.Name(), "--data-checksums",
		"--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions")
	return run(cmd, "initdb "+dir)
}

// Configure writes pgha.conf (included last from postgresql.conf) and
// pg_hba.conf. Values are quoted per postgresql.conf rules.
func (r *Runtime) Configure(dir string, settings map[string]string, hba []string) error {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Managed by pgha: edit cluster.hcl instead; this file is rewritten on apply.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	if err := r.writeFile(filepath.Join(dir, "pgha.conf"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write pgha.conf: %w", err)
	}
	if err := r.includePghaConf(dir); err != nil {
		return err
	}
	hb := "# Managed by pgha: edit cluster.hcl instead; this file is rewritten on apply.\n" + strings.Join(hba, "\n") + "\n"
	if err := r.writeFile(filepath.Join(dir, "pg_hba.conf"), []byte(hb), 0o600); err != nil {
		return fmt.Errorf("write pg_hba.conf: %w", err)
	}
	return nil
}

const includeLine = "include_if_exists = 'pgha.conf'"

func (r *Runtime) includePghaConf(dir string) error {
	path := filepath.Join(dir, "postgresql.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read postgresql.conf: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == includeLine {
		return nil
	}
	var kept []string
	for _, l := range lines {
		if l != includeLine {
			kept = append(kept, l)
		}
	}
	kept = append(kept, includeLine)
	if err := r.writeFile(path, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

// SetStandby creates or removes standby.signal.
func (r *Runtime) SetStandby(dir string, on bool) error {
	path := filepath.Join(dir, "standby.signal")
	if !on {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove standby.signal: %w", err)
		}
		return nil
	}
	if err := r.writeFile(path, nil, 0o600); err != nil {
		return fmt.Errorf("write standby.signal: %w", err)
	}
	return nil
}

// PassEntry is one line of a libpq passfile; empty fields match anything.
type PassEntry struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
}

// WritePassfile writes a libpq passfile (0600, owned by RunAs) so that
// replication passwords never appear in PostgreSQL's configuration.
func (r *Runtime) WritePassfile(path string, entries []PassEntry) error {
	if err := r.mkdirOwned(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	field := func(s string) string {
		if s == "" {
			return "*"
		}
		return esc.Replace(s)
	}
	var b strings.Builder
	for _, e := range entries {
		port := "*"
		if e.Port > 0 {
			port = strconv.Itoa(e.Port)
		}
		fmt.Fprintf(&b, "%s:%s:%s:%s:%s\n", field(e.Host), port, field(e.Database), field(e.User), esc.Replace(e.Password))
	}
	if err := r.writeFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write passfile: %w", err)
	}
	return nil
}
