package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgha/pgha/internal/pgconf"
)

// managedHeader opens every file pgha rewrites (pgconf's, without its newline).
var managedHeader = strings.TrimSuffix(pgconf.Header, "\n")

// includeLine is appended to postgresql.conf once: pgha's settings live in
// their own file, read last so that they win, and the rest of
// postgresql.conf stays the operator's (or initdb's).
const includeLine = "include_if_exists = 'pgha.conf'"

// Configure writes the node's settings to <dir>/pgha.conf (one `key =
// 'value'` line each, sorted so that the file only changes when a setting
// does), makes postgresql.conf include it, and writes pg_hba.conf from hba.
// Files are 0600, owned by RunAs, replaced atomically: a server starting
// or reloading meanwhile reads the old file or the new one.
func (r *Runtime) Configure(dir string, settings map[string]string, hba []string) error {
	dir, err := absPath("configure", dir)
	if err != nil {
		return err
	}
	conf, err := pgconf.Settings(settings)
	if err != nil {
		return fmt.Errorf("configure %s: %w", dir, err)
	}
	hbaText, err := pgconf.HBA(hba)
	if err != nil {
		return fmt.Errorf("configure %s: %w", dir, err)
	}
	pgconf := filepath.Join(dir, "postgresql.conf")
	current, err := os.ReadFile(pgconf)
	if err != nil {
		return fmt.Errorf("configure %s: %w (is the data directory initialised?)", dir, err)
	}
	if err := r.writeFileAtomic(filepath.Join(dir, "pgha.conf"), conf, 0o600); err != nil {
		return fmt.Errorf("configure %s: write pgha.conf: %w", dir, err)
	}
	if next := withInclude(current); string(next) != string(current) {
		if err := r.writeFileAtomic(pgconf, next, 0o600); err != nil {
			return fmt.Errorf("configure %s: write postgresql.conf: %w", dir, err)
		}
	}
	if err := r.writeFileAtomic(filepath.Join(dir, "pg_hba.conf"), hbaText, 0o600); err != nil {
		return fmt.Errorf("configure %s: write pg_hba.conf: %w", dir, err)
	}
	return nil
}

// withInclude returns postgresql.conf ending with exactly one include of
// pgha.conf, whatever spacing earlier copies of the line had.
func withInclude(conf []byte) []byte {
	var kept []string
	for _, l := range strings.Split(strings.TrimRight(string(conf), "\n"), "\n") {
		if strings.Join(strings.Fields(l), "") != strings.ReplaceAll(includeLine, " ", "") {
			kept = append(kept, l)
		}
	}
	for len(kept) > 0 && strings.TrimSpace(kept[len(kept)-1]) == "" {
		kept = kept[:len(kept)-1]
	}
	kept = append(kept, includeLine)
	return []byte(strings.Join(kept, "\n") + "\n")
}
