package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Extract unpacks a base backup's tar stream into dir (which must be empty
// or missing). Entries that would land outside dir are refused.
func Extract(r io.Reader, dir string) error {
	return untar(r, dir, os.O_EXCL, nil)
}

// untar writes a tar stream's directories and files under dir. mode adds
// to the open flags (O_EXCL: never overwrite; O_TRUNC: a later copy
// replaces an earlier one); accept, when set, vets each entry first.
func untar(r io.Reader, dir string, mode int, accept func(*tar.Header) error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
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
		target := filepath.Join(dir, h.Name)
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(os.PathSeparator)) && target != filepath.Clean(dir) {
			return fmt.Errorf("backup entry %q leaves the target directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|mode, os.FileMode(h.Mode)&0o600|0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			return fmt.Errorf("backup entry %q is a symlink (tablespaces are not supported yet)", h.Name)
		}
	}
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
