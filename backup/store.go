package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Store is where backups are kept: whole objects written atomically, read,
// listed and deleted by slash-separated names ("CLUSTER/ID/base.tar.zst").
// These four operations are all the backup code asks of storage, so that
// object storage can follow the directory repository without touching it.
type Store interface {
	// Put writes name from what fill produces; the object appears whole
	// (synced, under its name) only if fill and the write succeed.
	Put(ctx context.Context, name string, fill func(io.Writer) error) error
	// Get opens an object for reading.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the names under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, name string) error
}

// OpenStore opens a repository by its configured location: a directory,
// or s3://bucket/prefix with how to reach the server (s3 nil for a
// directory). It contacts nothing: the first operation does.
func OpenStore(repo string, s3 *S3Options) (Store, error) {
	if IsS3(repo) {
		if s3 == nil {
			return nil, fmt.Errorf("repository %s is in S3 and no s3 block says how to reach it", repo)
		}
		return OpenS3(repo, *s3)
	}
	return Dir(repo), nil
}

// Where names an object of a store for a message: the file of a
// directory repository, s3://bucket/prefix/name of an S3 one.
func Where(st Store, name string) string {
	if d, ok := st.(Dir); ok {
		if p, err := d.path(name); err == nil {
			return p
		}
	}
	return fmt.Sprintf("%v/%s", st, name)
}

// Dir is a Store in a local directory: objects are files (0600), written
// through a ".partial" file that is synced and renamed into place.
type Dir string

func (d Dir) path(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "\\") {
		return "", fmt.Errorf("bad object name %q", name)
	}
	return filepath.Join(string(d), filepath.FromSlash(clean[1:])), nil
}

func (d Dir) Put(_ context.Context, name string, fill func(io.Writer) error) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".partial"
	// Exclusive: two writers of one name (two backups started in the same
	// second) must not interleave; the second fails and says why.
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s is being written by another backup (or a crashed one left it: remove it)", tmp)
	}
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // gone after the rename; removes a partial file on failure
	err = fill(f)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	// The rename is durable once its directory is synced: the WAL
	// archive tells the server a position is stored only after Put.
	dir, err := os.Open(filepath.Dir(p))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// Abandon removes what a crashed writer of name left (its temporary
// file), for a writer that knows it is the only one: the continuous
// archive's receiver, which holds its replication slot.
func (d Dir) Abandon(name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p + ".partial"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove what a crashed writer left of %s: %w", name, err)
	}
	return nil
}

// abandon calls st's Abandon where it has one.
func abandon(st Store, name string) error {
	if a, ok := st.(interface{ Abandon(string) error }); ok {
		return a.Abandon(name)
	}
	return nil
}

func (d Dir) Get(_ context.Context, name string) (io.ReadCloser, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

func (d Dir) List(_ context.Context, prefix string) ([]string, error) {
	root, err := d.path(prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !e.IsDir() && !strings.HasSuffix(p, ".partial") {
			rel, _ := filepath.Rel(string(d), p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func (d Dir) Delete(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
