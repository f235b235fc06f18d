package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Extract unpacks a base backup's tar stream into dir, which must be
// missing or an empty directory (not a symlink): a restore never writes
// into existing data. Entries that would land outside dir are refused, and
// since no entry may be a symlink, nothing written can point outside it.
func Extract(r io.Reader, dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("restore into %s: it is not a directory (a symlink is not followed)", dir)
	default:
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			return fmt.Errorf("restore into %s: the directory is not empty; a restore never writes into existing data", dir)
		}
	}
	return untar(r, dir, os.O_EXCL, nil)
}

// untar writes a tar stream's directories and files under dir. mode adds
// to the open flags (O_EXCL: never overwrite; O_TRUNC: a later copy
// replaces an earlier one); accept, when set, vets each entry first.
// Every path is created one component at a time below dir and no
// component may be a symlink (Lstat, O_NOFOLLOW): an entry such as
// "pg_wal/x" cannot be redirected by a symlink already in dir.
func untar(r io.Reader, dir string, mode int, accept func(*tar.Header) error) error {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("restore into %s: not a directory (a symlink is not followed)", dir)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read backup: %w", err)
		}
		if accept != nil {
			if err := accept(h); err != nil {
				return err
			}
		}
		rel, err := entryPath(h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := mkdirBelow(dir, rel); err != nil {
				return err
			}
		case tar.TypeReg:
			if rel == "" {
				return fmt.Errorf("backup entry %q is a file in place of the target directory", h.Name)
			}
			if err := mkdirBelow(dir, filepath.Dir(rel)); err != nil {
				return err
			}
			target := filepath.Join(dir, rel)
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|syscall.O_NOFOLLOW|mode, 0o600)
			if err != nil {
				return fmt.Errorf("restore %q: %w", h.Name, err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink, tar.TypeLink:
			return fmt.Errorf("backup entry %q is a link (tablespaces are not supported yet)", h.Name)
		default:
			// Devices, FIFOs and extended headers are not part of a
			// data directory: skipped, never created.
		}
	}
}

// entryPath is a tar entry's name as a clean path relative to the target
// directory ("" for the directory itself); a name that climbs out (..)
// or is absolute is refused.
func entryPath(name string) (string, error) {
	if strings.ContainsRune(name, 0) || filepath.IsAbs(name) || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("backup entry %q leaves the target directory", name)
	}
	clean := filepath.Clean(name)
	if clean == "." {
		return "", nil
	}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("backup entry %q leaves the target directory", name)
	}
	return clean, nil
}

// mkdirBelow makes dir/rel, one component at a time, refusing any
// component that exists and is not a directory (a symlink above all).
func mkdirBelow(dir, rel string) error {
	if rel == "" || rel == "." {
		return nil
	}
	p := dir
	for _, c := range strings.Split(rel, string(os.PathSeparator)) {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("restore: %s exists and is not a directory (a symlink is not followed)", p)
		}
	}
	return nil
}

// Check reads a base backup's tar stream to the end, so that a truncated
// or corrupted archive is found without restoring it.
func Check(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read backup: %w", err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Errorf("read backup: %w", err)
		}
	}
}
