package local

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgha/pgha/internal/proc"
)

// chown gives path to RunAs. Without a user switch the files are already
// ours, which is theirs.
func (r *Runtime) chown(path string) error {
	if !r.switchUser {
		return nil
	}
	if err := os.Lchown(path, r.uid, r.gid); err != nil {
		return fmt.Errorf("give %s to %s: %w", path, r.user, err)
	}
	return nil
}

// canTraverse applies the kernel's rule for searching a directory: the
// owner's bits for the owner, the group's for a member, else the others'.
func (r *Runtime) canTraverse(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || r.uid == 0 {
		return true
	}
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == r.uid:
		return m&0o100 != 0
	case r.inGroup(st.Gid):
		return m&0o010 != 0
	default:
		return m&0o001 != 0
	}
}

// checkTraversable fails on the first existing ancestor of path that RunAs
// cannot enter, naming the chmod that fixes it: a root-only parent (a home
// directory, t.TempDir) is the usual reason a fresh node cannot start, and
// PostgreSQL's own message about it is far from the cause.
func (r *Runtime) checkTraversable(path string) error {
	var prefixes []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		prefixes = append(prefixes, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(prefixes) - 1; i >= 0; i-- {
		p := prefixes[i]
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil // everything below will be created by pgha, traversable
		}
		if err != nil {
			return fmt.Errorf("check %s: %w", p, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
		if !r.canTraverse(fi) {
			return fmt.Errorf("the %s user cannot enter %s (mode %04o, owner %s); run `chmod o+x %s`, or choose a data_dir outside it",
				r.user, p, fi.Mode().Perm(), ownerName(fi), p)
		}
	}
	return nil
}

func ownerName(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "?"
	}
	if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
		return u.Username
	}
	return strconv.Itoa(int(st.Uid))
}

// mkdirParents creates the missing ancestors of dir with mode 0755 whatever
// the umask, so that RunAs can pass through them.
func mkdirParents(dir string) error {
	parent := filepath.Dir(dir)
	if fi, err := os.Stat(parent); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", parent)
		}
		return nil
	}
	if parent == filepath.Dir(parent) {
		return nil
	}
	if err := mkdirParents(parent); err != nil {
		return err
	}
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	if err := os.Chmod(parent, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", parent, err)
	}
	return nil
}

// ensurePrivateDir makes dir exist, mode 0700 and owned by RunAs, creating
// its parents 0755 after checking RunAs can reach it.
func (r *Runtime) ensurePrivateDir(dir string) error {
	if err := r.checkTraversable(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := mkdirParents(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return r.chown(dir)
}

// writeFileAtomic replaces path with data, owned by RunAs with mode perm.
// Readers (a starting server, a concurrent pgha plan) see the old file or
// the new one, never half of it.
func (r *Runtime) writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Chmod(tmp, perm); err != nil {
		return err
	}
	if err = r.chown(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// isEmpty reports whether dir has no entries.
func isEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

// logTail is the end of a log file formatted for an error message: the
// server's own words are the fastest way to the cause.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("\nlast lines of %s:\n  %s", path, strings.Join(lines, "\n  "))
}

// alive reports whether a process exists and is not a zombie (a server
// orphaned to a non-reaping parent stays in the table after it exited).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	st, err := proc.Read(pid)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	return !st.Exited()
}

// processOwner is the uid a process runs as, from its /proc entry.
func processOwner(pid int) (int, bool) {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// absPath makes dir absolute: child processes run from "/", so a relative
// path would name another directory for them than for pgha.
func absPath(what, dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("%s: no path given", what)
	}
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, dir, err)
	}
	return d, nil
}
