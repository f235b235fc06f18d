// Package local runs PostgreSQL nodes, and the catalog's managed
// redis-server, as local processes.
//
// pgha usually runs as root and PostgreSQL refuses to, so every server
// binary runs as an unprivileged OS user (Options.RunAs) and every file a
// server reads is owned by that user. Servers start in a session of their
// own: they outlive pgha and never receive its terminal's signals.
package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// installHint ends every "not found" error: a fresh machine gets what pgha
// needs from the project's own set-up, never from steps done by hand.
const installHint = "run `make setup` (or apt-get install postgresql), or set bin_dir in runtime \"local\""

// Options configure a Runtime.
type Options struct {
	BinDir string // PostgreSQL server binaries; "" = find them
	RunAs  string // OS user the servers run as; "" = the current user
}

// Runtime starts, stops and observes local servers. It holds no connection
// and no process: every method looks at the file system afresh, so one
// Runtime serves a whole `pgha watch`.
type Runtime struct {
	bin        string
	user       string // name of the OS user servers run as
	uid        int
	gid        int
	home       string
	switchUser bool   // children need a credential switch (pgha is root)
	locale     string // locale for initdb and every child's messages

	groupsOnce sync.Once
	groups     []uint32 // RunAs's supplementary groups (ssl-cert and the like)
}

// New finds the PostgreSQL binaries and resolves the RunAs user. It runs on
// every `pgha plan`, so it is cheap: no subprocess runs when BinDir is given
// or the binaries are where Debian and Ubuntu put them.
func New(o Options) (*Runtime, error) {
	r := &Runtime{}
	if err := r.resolveUser(o.RunAs); err != nil {
		return nil, err
	}
	bin, err := findBinDir(o.BinDir)
	if err != nil {
		return nil, err
	}
	r.bin = bin
	r.locale = pickLocale()
	return r, nil
}

// BinDir is the directory the PostgreSQL binaries are run from.
func (r *Runtime) BinDir() string { return r.bin }

func (r *Runtime) resolveUser(name string) error {
	euid := os.Geteuid()
	if name == "" {
		r.uid, r.gid, r.user, r.home = euid, os.Getegid(), os.Getenv("USER"), os.Getenv("HOME")
		if u, err := user.LookupId(strconv.Itoa(euid)); err == nil {
			r.user, r.home = u.Username, u.HomeDir
		}
		if euid == 0 {
			return fmt.Errorf("pgha runs as root and PostgreSQL refuses to: set run_as in runtime \"local\" to an unprivileged user such as \"postgres\"")
		}
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("run_as %q: no such OS user (`make setup` creates postgres; or set run_as to an existing user): %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("run_as %q: unusable uid %q / gid %q", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return fmt.Errorf("run_as %q is root, and PostgreSQL refuses to run as root: choose an unprivileged user such as \"postgres\"", name)
	}
	if euid != 0 && euid != uid {
		return fmt.Errorf("run_as %q: pgha runs as uid %d and can start servers as another user only when run as root; run pgha as %s or as root", name, euid, name)
	}
	r.uid, r.gid, r.user, r.home = uid, gid, u.Username, u.HomeDir
	r.switchUser = euid != uid
	return nil
}

// findBinDir looks where an operator would: the configured directory, then
// next to pg_config or initdb on PATH (a source build or a distribution
// that puts server binaries on PATH), then Debian's newest
// /usr/lib/postgresql/<major>/bin, and only then asks `pg_config --bindir`.
func findBinDir(given string) (string, error) {
	if given != "" {
		d, err := filepath.Abs(given)
		if err != nil {
			return "", fmt.Errorf("bin_dir %s: %w", given, err)
		}
		if !hasServerBins(d) {
			return "", fmt.Errorf("bin_dir %s lacks initdb, pg_ctl, pg_basebackup or postgres; point it at PostgreSQL's server binaries or %s", d, installHint)
		}
		return d, nil
	}
	for _, name := range []string{"pg_config", "initdb"} {
		if p, err := exec.LookPath(name); err == nil {
			// A symlink on PATH (/usr/local/bin/initdb) stands for the
			// directory that holds the whole set.
			if real, err := filepath.EvalSymlinks(p); err == nil && hasServerBins(filepath.Dir(real)) {
				return filepath.Dir(real), nil
			}
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(i, j int) bool { return major(matches[i]) > major(matches[j]) })
	for _, d := range matches {
		if hasServerBins(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(p, "--bindir").Output(); err == nil {
			if d := strings.TrimSpace(string(out)); hasServerBins(d) {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; %s", installHint)
}

// hasServerBins reports whether dir holds every binary pgha runs.
func hasServerBins(dir string) bool {
	for _, b := range []string{"initdb", "pg_ctl", "pg_basebackup", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// major is N in /usr/lib/postgresql/N/bin, so that 17 sorts above 9.6.
func major(binDir string) float64 {
	n, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return n
}

// pickLocale chooses C.UTF-8 where the C library has it, else C. A fixed
// locale keeps initdb from failing on an operator's ungenerated LANG, keeps
// server messages in English for error reports, and gives every node of a
// cluster the same collation whatever shell started it.
func pickLocale() string {
	for _, d := range []string{"/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"} {
		if _, err := os.Stat(d); err == nil {
			return "C.UTF-8"
		}
	}
	return "C"
}

// command prepares a binary to run as RunAs, in a new session (Setsid) so
// that servers it starts outlive pgha and never get its terminal's signals.
// The environment is built from scratch: pgha's own (PGHA_* secrets,
// PGPASSWORD and other libpq settings) must not leak into servers, where
// /proc/<pid>/environ would show it to the RunAs user.
func (r *Runtime) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(r.bin, bin)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// Pdeathsig: a tool pgha waits for (pg_rewind, pg_basebackup, pg_ctl)
	// dies with pgha rather than racing the next apply; servers survive,
	// since the flag is not inherited by what the tool forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if r.switchUser {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid), Groups: r.supplementaryGroups()}
	}
	home := r.home
	if fi, err := os.Stat(home); home == "" || err != nil || !fi.IsDir() || !r.canTraverse(fi) {
		home = "/"
	}
	cmd.Dir = "/" // readable by everyone, and no relative path depends on it: callers pass absolute paths
	cmd.Env = []string{
		"PATH=" + r.bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home, "USER=" + r.user, "LOGNAME=" + r.user,
		"LANG=" + r.locale, "LC_ALL=" + r.locale,
	}
	if tz, ok := os.LookupEnv("TZ"); ok {
		cmd.Env = append(cmd.Env, "TZ="+tz) // initdb derives the cluster's timezone from it
	}
	// A cancel kills the tool's whole process group (Setsid made it the
	// leader): pg_basebackup's WAL-streaming child must not go on writing
	// into a data directory nobody waits for. Servers are not in it:
	// pg_ctl and redis-server put them in sessions of their own.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that kept our output pipe open must not hang pgha.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// supplementaryGroups are looked up once, on the first command, to keep
// New free of group-database reads.
func (r *Runtime) supplementaryGroups() []uint32 {
	r.groupsOnce.Do(func() {
		u, err := user.LookupId(strconv.Itoa(r.uid))
		if err != nil {
			return
		}
		ids, err := u.GroupIds()
		if err != nil {
			return
		}
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				r.groups = append(r.groups, uint32(g))
			}
		}
	})
	return r.groups
}

// inGroup reports whether gid is one of RunAs's groups.
func (r *Runtime) inGroup(gid uint32) bool {
	if int(gid) == r.gid {
		return true
	}
	if !r.switchUser {
		groups, _ := os.Getgroups()
		for _, g := range groups {
			if uint32(g) == gid {
				return true
			}
		}
		return false
	}
	for _, g := range r.supplementaryGroups() {
		if g == gid {
			return true
		}
	}
	return false
}

// output runs cmd and returns its combined output, trimmed, with any of
// secrets replaced: programs may echo what they were given.
func output(cmd *exec.Cmd, secrets ...string) (string, error) {
	out, err := cmd.CombinedOutput()
	return redact(strings.TrimSpace(string(out)), secrets...), err
}

// withOutput appends a program's output to an error message.
func withOutput(out string) string {
	if out == "" {
		return ""
	}
	return "\n" + out
}

func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "<redacted>")
		}
	}
	return s
}

// withDefaultTimeout bounds waits whose caller gave no deadline, so that a
// server that never comes up fails an apply instead of hanging it.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
