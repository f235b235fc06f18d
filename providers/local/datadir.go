package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CreateDataDir makes an empty data directory, mode 0700 and owned by
// RunAs, creating missing parents 0755. It first checks that RunAs can
// traverse every existing parent, since initdb and the server would fail
// later with a message far from the cause. An existing empty directory is
// taken over; one with files is refused: pgha never builds on unknown data.
func (r *Runtime) CreateDataDir(dir string) error {
	dir, err := absPath("create data directory", dir)
	if err != nil {
		return err
	}
	if empty, err := isEmpty(dir); err == nil && !empty {
		return fmt.Errorf("create data directory %s: it exists and is not empty; pgha does not take over existing files", dir)
	}
	if err := r.ensurePrivateDir(dir); err != nil {
		return fmt.Errorf("create data directory %s: %w", dir, err)
	}
	return nil
}

// SetStandby creates (on) or removes (off) standby.signal, which makes the
// server start in recovery and follow primary_conninfo.
func (r *Runtime) SetStandby(dir string, on bool) error {
	dir, err := absPath("standby.signal", dir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "standby.signal")
	if !on {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	if ok, err := fileExists(filepath.Join(dir, "PG_VERSION")); err != nil || !ok {
		return fmt.Errorf("create %s: %s holds no PostgreSQL cluster", path, dir)
	}
	if err := r.writeFileAtomic(path, nil, 0o600); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// RemoveDataDir deletes a node's data directory. It refuses while a
// postmaster runs in it, and refuses a directory that pgha did not make
// for cluster (CheckOwned): a mistyped data_dir, another cluster's data
// or someone's home directory is never removed.
func (r *Runtime) RemoveDataDir(dir, cluster string) error {
	dir, err := absPath("remove data directory", dir)
	if err != nil {
		return err
	}
	if dir == "/" {
		return errors.New("remove data directory: refusing to remove /")
	}
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if pm, running, _ := r.postmaster(dir); running {
		return fmt.Errorf("remove data directory %s: PostgreSQL (pid %d) is running in it; stop it first", dir, pm.PID)
	}
	if err := CheckOwned(dir, cluster); err != nil {
		return fmt.Errorf("remove data directory: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove data directory %s: %w", dir, err)
	}
	return nil
}
