package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// InitDB initialises a new cluster in dir (missing or empty). Data
// checksums are on so that pg_rewind can later rejoin an old primary; local
// connections use peer and TCP uses scram-sha-256, never trust. The
// superuser's password reaches initdb through a 0600 file owned by RunAs
// that is removed afterwards: never on a command line, where ps shows it.
func (r *Runtime) InitDB(ctx context.Context, dir, superuser, password string) error {
	dir, err := absPath("initdb", dir)
	if err != nil {
		return err
	}
	if superuser == "" {
		return fmt.Errorf("initdb %s: no superuser name", dir)
	}
	if strings.ContainsAny(password, "\r\n") {
		return fmt.Errorf("initdb %s: the superuser password contains a line break, which initdb's password file cannot carry", dir)
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := r.CreateDataDir(dir); err != nil {
			return err
		}
	}
	args := []string{"-D", dir, "-U", superuser}
	if password != "" {
		pwfile, err := r.secretFile(filepath.Dir(dir), password+"\n")
		if err != nil {
			return fmt.Errorf("initdb %s: password file: %w", dir, err)
		}
		defer os.Remove(pwfile)
		args = append(args, "--pwfile="+pwfile)
	}
	args = append(args, "--data-checksums", "--auth-local=peer", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--locale="+r.locale, "--no-instructions")
	out, err := output(r.command(ctx, "initdb", args...), password)
	if err != nil {
		return fmt.Errorf("initdb %s: %w%s", dir, err, withOutput(out))
	}
	return nil
}

// secretFile writes content to a new 0600 file in dir, owned by RunAs, and
// returns its path. dir is the data directory's parent, which
// CreateDataDir has checked RunAs can traverse (/tmp may be private).
func (r *Runtime) secretFile(dir, content string) (path string, err error) {
	f, err := os.CreateTemp(dir, ".pgha-secret-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err == nil {
		_, err = f.WriteString(content)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.chown(f.Name())
	}
	return f.Name(), err
}
