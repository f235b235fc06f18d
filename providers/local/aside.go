package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/state"
)

// AsidePath is where MoveAside puts dir at stamp (pgdata.AsidePath).
func AsidePath(dir, stamp string) string { return pgdata.AsidePath(dir, stamp) }

// MoveAside renames a node's stopped data directory to AsidePath(dir,
// stamp) and creates an empty one in its place, for a re-clone. It
// refuses while a postmaster runs in it. A missing or empty directory has
// nothing to keep: it is (re)created and "" returned.
func (r *Runtime) MoveAside(dir, stamp string) (string, error) {
	dir, err := absPath("move data directory aside", dir)
	if err != nil {
		return "", err
	}
	if empty, err := isEmpty(dir); errors.Is(err, os.ErrNotExist) || (err == nil && empty) {
		return "", r.CreateDataDir(dir)
	}
	if pm, running, _ := r.postmaster(dir); running {
		return "", fmt.Errorf("move %s aside: PostgreSQL (pid %d) is running in it; stop it first", dir, pm.PID)
	}
	aside := AsidePath(dir, stamp)
	if _, err := os.Lstat(aside); err == nil {
		return "", fmt.Errorf("move %s aside: %s exists already", dir, aside)
	}
	if err := os.Rename(dir, aside); err != nil {
		return "", fmt.Errorf("move %s aside: %w", dir, err)
	}
	if err := r.CreateDataDir(dir); err != nil {
		return aside, fmt.Errorf("moved %s aside to %s, but: %w", dir, aside, err)
	}
	return aside, nil
}

// FindAside lists the set-aside data directories of dir with their sizes,
// oldest first (the stamps sort by time).
func FindAside(dir string) []state.AsideDir {
	dir, err := absPath("data directory", dir)
	if err != nil {
		return nil
	}
	var out []state.AsideDir
	for _, m := range pgdata.AsideMarkers {
		matches, _ := filepath.Glob(dir + m + "*")
		for _, p := range matches {
			if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
				continue // a symlink or a file was not made by pgha
			}
			out = append(out, state.AsideDir{Path: p, Bytes: treeBytes(p)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// treeBytes is the size of the regular files under dir (what removing it
// frees, hard links aside).
func treeBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// RemoveAside deletes one set-aside data directory of dir. It refuses
// anything whose name does not say it was set aside from dir, a symlink,
// and a directory pgha did not make for cluster (CheckOwned).
func (r *Runtime) RemoveAside(dir, path, cluster string) error {
	dir, err := absPath("remove set-aside data", dir)
	if err != nil {
		return err
	}
	if !pgdata.IsAsideOf(dir, path) {
		return fmt.Errorf("remove %s: not a set-aside data directory of %s", path, dir)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("remove %s: not a directory (a symlink or a file was not set aside by pgha)", path)
	}
	if err := CheckOwned(path, cluster); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
