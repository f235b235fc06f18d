package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/internal/pgdata"
)

// MarkerFile is pgdata.MarkerFile: pgha deletes a data directory only
// when it carries this file for the same cluster (see CheckOwned).
const MarkerFile = pgdata.MarkerFile

// Marker is what MarkerFile records.
type Marker = pgdata.Marker

// WriteMarker records in dir that pgha made it for m.Cluster and m.Node.
func (r *Runtime) WriteMarker(dir string, m Marker) error {
	content, err := m.Text()
	if err != nil {
		return fmt.Errorf("mark %s: %w", dir, err)
	}
	if err := r.writeFileAtomic(filepath.Join(dir, MarkerFile), content, 0o600); err != nil {
		return fmt.Errorf("mark %s as pgha's: %w", dir, err)
	}
	return nil
}

// ReadMarker reads dir's marker; ok is false when there is none. A marker
// that is not a regular file (a symlink pointing elsewhere) is an error.
func ReadMarker(dir string) (m Marker, ok bool, err error) {
	path := filepath.Join(dir, MarkerFile)
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return Marker{}, false, nil
	}
	if err != nil {
		return Marker{}, false, err
	}
	if !fi.Mode().IsRegular() {
		return Marker{}, false, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Marker{}, false, err
	}
	m, err = pgdata.ParseMarker(string(b))
	if err != nil {
		return Marker{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return m, true, nil
}

// CheckOwned returns nil when pgha may delete dir as a data directory of
// cluster: it is missing or empty (nothing to lose), it carries pgha's
// marker for cluster, or it is a data directory an older pgha made
// (PG_VERSION, and a pgha.conf starting with pgha's header). Anything else
// is an error that says why. Whatever removes or replaces a data directory
// (destroy, a re-clone, moving one aside and deleting it later) asks this
// first.
func CheckOwned(dir, cluster string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if empty, err := isEmpty(dir); err == nil && empty {
		return nil
	}
	m, ok, err := ReadMarker(dir)
	if err != nil {
		return fmt.Errorf("%s: %w; pgha deletes only what it marked", dir, err)
	}
	if ok {
		if m.Cluster != cluster {
			return fmt.Errorf("%s belongs to cluster %q (see %s), not %q; pgha deletes only its own data directories", dir, m.Cluster, MarkerFile, cluster)
		}
		return nil
	}
	if legacyDataDir(dir) {
		return nil
	}
	return fmt.Errorf("%s carries no %s and no pgha.conf written by pgha: pgha did not make it and will not delete it; move it away by hand if it is really meant to go", dir, MarkerFile)
}

// legacyDataDir recognises a data directory made by pgha before markers:
// a cluster (PG_VERSION) with pgha's own settings file.
func legacyDataDir(dir string) bool {
	if fi, err := os.Lstat(filepath.Join(dir, "PG_VERSION")); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return startsWithHeader(filepath.Join(dir, "pgha.conf"))
}

// startsWithHeader reports whether path is a regular file whose first
// line is pgha's managed-file header.
func startsWithHeader(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	return line == pgconf.Header
}

// CheckRedisOwned returns nil when dir is pgha's managed catalog
// directory, or could become one without taking anything over: missing,
// holding the redis.conf pgha writes (its first line is pgha's header),
// or, before that file exists, nothing but what pgha writes first (the
// tls directory). Only then may pgha write its redis.conf there, start a
// server on it, or delete it: another Redis's directory (its own
// redis.conf, its dump.rdb) is never rewritten or removed.
func CheckRedisOwned(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a symlink is not followed)", dir)
	}
	conf := filepath.Join(dir, "redis.conf")
	if _, err := os.Lstat(conf); err == nil {
		if startsWithHeader(conf) {
			return nil
		}
		return fmt.Errorf("%s holds no redis.conf written by pgha (its redis.conf is another's): pgha did not make it and will neither use nor delete it; move it away by hand, or point the catalog elsewhere", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != "tls" || !e.IsDir() {
			return fmt.Errorf("%s holds no redis.conf written by pgha but has %s: pgha did not make it and will neither use nor delete it; move it away by hand, or point the catalog elsewhere", dir, e.Name())
		}
	}
	return nil
}

// RemoveRedisDir deletes a managed catalog's directory, after
// CheckRedisOwned. The server must be stopped (StopRedis).
func (r *Runtime) RemoveRedisDir(dir string) error {
	dir, err := absPath("remove redis directory", dir)
	if err != nil {
		return err
	}
	if err := CheckRedisOwned(dir); err != nil {
		return fmt.Errorf("remove redis directory: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove redis directory %s: %w", dir, err)
	}
	return nil
}
