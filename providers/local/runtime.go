// Package local runs PostgreSQL nodes, and a managed redis-server, as local
// processes. Every server binary runs as an unprivileged OS user (RunAs):
// PostgreSQL refuses to run as root, and pgha usually does.
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
	"syscall"
)

// Options configure a Runtime.
type Options struct {
	BinDir string // "" = find the PostgreSQL binaries
	RunAs  string // "" = the current user
}

// Runtime drives local PostgreSQL processes.
type Runtime struct {
	bin      string
	runAs    string
	uid, gid int
	home     string
}

const installHint = "install PostgreSQL (`make setup`, or apt-get install postgresql) or set bin_dir in runtime \"local\""

// New finds the binaries and resolves the user. It is cheap: no subprocess
// runs when the binaries are where Debian puts them.
func New(o Options) (*Runtime, error) {
	r := &Runtime{runAs: o.RunAs, uid: -1, gid: -1}
	bin, err := findBinDir(o.BinDir)
	if err != nil {
		return nil, err
	}
	r.bin = bin
	if o.RunAs != "" {
		u, err := user.Lookup(o.RunAs)
		if err != nil {
			return nil, fmt.Errorf("run_as user %q: %w (create it, or set run_as in runtime \"local\")", o.RunAs, err)
		}
		r.uid, _ = strconv.Atoi(u.Uid)
		r.gid, _ = strconv.Atoi(u.Gid)
		r.home = u.HomeDir
		if os.Getuid() == r.uid {
			r.uid, r.gid = -1, -1 // already that user: no credential switch
		}
	}
	return r, nil
}

func findBinDir(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(filepath.Join(given, "pg_ctl")); err != nil {
			return "", fmt.Errorf("bin_dir %s has no pg_ctl: %w", given, err)
		}
		return given, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) > 0 {
		sort.Slice(matches, func(i, j int) bool { return major(matches[i]) > major(matches[j]) })
		return filepath.Dir(matches[0]), nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("PostgreSQL server binaries (pg_ctl, initdb) not found; %s", installHint)
}

func major(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// BinDir is where the PostgreSQL binaries were found.
func (r *Runtime) BinDir() string { return r.bin }

// command prepares a binary to run as RunAs, in its own session so that the
// servers it starts outlive pgha and never see its terminal's signals.
func (r *Runtime) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := name
	if !filepath.IsAbs(name) {
		path = filepath.Join(r.bin, name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	env := []string{"PATH=" + r.bin + ":/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	if r.uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid)}
		home := r.home
		if home == "" {
			home = "/tmp"
		}
		env = append(env, "HOME="+home, "USER="+r.runAs)
	} else {
		env = append(env, "HOME="+os.Getenv("HOME"), "USER="+os.Getenv("USER"))
	}
	cmd.Env = env
	return cmd
}

// run executes a prepared command and wraps its output into the error.
func run(cmd *exec.Cmd, what string) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg != "" {
			return fmt.Errorf("%s: %w\n%s", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// chown gives path to RunAs (no-op when no switch is needed).
func (r *Runtime) chown(path string) error {
	if r.uid < 0 {
		return nil
	}
	if err := os.Chown(path, r.uid, r.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, r.runAs, err)
	}
	return nil
}

// writeFile writes atomically (temp + rename), owned by RunAs.
func (r *Runtime) writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".pgha-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err := r.chown(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// mkdirOwned creates dir (mode, owned by RunAs) and any missing parents
// (0755, so that RunAs can traverse them).
func (r *Runtime) mkdirOwned(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, mode); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	return r.chown(dir)
}
