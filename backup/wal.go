package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/state"
)

// Segment is one WAL segment file.
type Segment struct {
	Name string
	Data []byte
}

// WALSource gives a WAL-based backup its end point and the WAL up to it.
// The primary provides both: the WAL is the same on every node, and only
// a primary can write the restore point.
type WALSource interface {
	// RestorePoint writes a named restore point and returns its end.
	RestorePoint(ctx context.Context, name string) (state.LSN, error)
	// ReceiveWAL streams the WAL from the segment holding start on
	// timeline (0: the current one) up to stop, segment by segment,
	// following the server's timeline history past a switchover or a
	// failover (a history file comes as a Segment too), and returns the
	// timeline it ended on.
	ReceiveWAL(ctx context.Context, timeline int, start, stop state.LSN, sink func(Segment) error) (int, error)
}

// WAL takes an incremental or differential backup as the WAL written since
// its reference: parent for an incremental (the newest backup of any
// type), the chain's full for a differential. A differential carries over
// the WAL the chain's later backups already hold (carry, oldest first) and
// adds what was written since, so that it restores with its full alone.
//
// This is how pgha builds incremental chains on every PostgreSQL version:
// restore = the full, then replay up to the backup's restore point. A
// chain continues across timelines: the WAL since ref is read along the
// primary's history, with the history files recovery follows.
func WAL(ctx context.Context, o Options, typ string, ref state.Backup, carry []state.Backup, since state.LSN, src WALSource) (state.Backup, error) {
	if typ != "incremental" && typ != "differential" {
		return state.Backup{}, fmt.Errorf("a WAL backup is incremental or differential, not %q", typ)
	}
	b := o.child(typ, ref)
	b.Format, b.StartLSN = policy.FormatWAL, ref.StopLSN
	b.RestorePoint = b.ID
	stop, err := src.RestorePoint(ctx, b.RestorePoint)
	if err != nil {
		return b, fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.StopLSN = stop.String()
	err = o.store(ctx, &b, "wal.tar", func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, m := range carry {
			if err := copyWAL(o.Repository, m, tw); err != nil {
				return fmt.Errorf("carry over the WAL of %s: %w", m.ID, err)
			}
		}
		tl, err := src.ReceiveWAL(ctx, ref.Timeline, since, stop, func(s Segment) error {
			h := &tar.Header{Name: "pg_wal/" + s.Name, Mode: 0o600, Size: int64(len(s.Data)), ModTime: b.Started, Typeflag: tar.TypeReg}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			_, err := tw.Write(s.Data)
			return err
		})
		if err != nil {
			return err
		}
		b.Timeline = tl
		return tw.Close()
	})
	if err != nil {
		return b, err
	}
	return b, o.finish(ctx, &b)
}

// copyWAL appends the segments of a stored WAL backup to tw.
func copyWAL(repo Store, m state.Backup, tw *tar.Writer) error {
	rc, err := Open(repo, m)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// How a chain is put back together.
const (
	LayoutBase    = "base"    // a full alone: extract it
	LayoutWAL     = "wal"     // a full and WAL: extract, add the WAL to pg_wal, replay to the restore point
	LayoutCombine = "combine" // a full and PostgreSQL 17 incrementals: extract each, pg_combinebackup
	LayoutLogical = "logical" // a pg_dumpall script: a fresh cluster, then psql
)

// Layout says how chain (full first) is restored, and refuses a chain
// that mixes WAL-based and block-level incrementals.
func Layout(chain []state.Backup) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("nothing to restore")
	}
	if chain[0].Format == policy.FormatLogical {
		if len(chain) > 1 {
			return "", fmt.Errorf("restore %s: a logical backup starts no chain", chain[len(chain)-1].ID)
		}
		return LayoutLogical, nil
	}
	if f := chain[0].Format; f != "" && f != policy.FormatBase {
		return "", fmt.Errorf("restore %s: a chain starts with a full base backup, this is %q", chain[0].ID, f)
	}
	if len(chain) == 1 {
		return LayoutBase, nil
	}
	kind := chain[1].Format
	for _, b := range chain[1:] {
		if b.Format != kind || (kind != policy.FormatWAL && kind != policy.FormatIncremental) {
			return "", fmt.Errorf("restore %s: its chain mixes %q and %q backups", chain[len(chain)-1].ID, kind, b.Format)
		}
	}
	if kind == policy.FormatWAL {
		return LayoutWAL, nil
	}
	return LayoutCombine, nil
}

// RecoverySettings are what a restored WAL chain starts with: replay to
// the last backup's restore point, then promote. Recovery reads the WAL
// from pg_wal; an archive recovery insists on a restore_command, and one
// that finds nothing sends it there. Other layouts need none.
//
// A chain that crossed a switchover or a failover ends on a later
// timeline than its full: recovery follows the history file the WAL
// backup stored to that timeline, the one its restore point is on.
func RecoverySettings(chain []state.Backup) map[string]string {
	if l, _ := Layout(chain); l != LayoutWAL {
		return map[string]string{}
	}
	last := chain[len(chain)-1]
	tli := "current"
	if last.Timeline > 0 && chain[0].Timeline > 0 && last.Timeline != chain[0].Timeline {
		tli = strconv.Itoa(last.Timeline)
	}
	return map[string]string{
		"restore_command":          "false",
		"recovery_target_name":     last.RestorePoint,
		"recovery_target_action":   "promote",
		"recovery_target_timeline": tli,
	}
}

// Combiner runs pg_combinebackup over parts (full first) into out.
type Combiner func(parts []string, out string) error

// RestoreChain writes a chain (full first) into dir, a new directory, and
// returns the recovery settings the restored server needs to start (see
// RecoverySettings). A block-level chain is extracted next to dir, one
// directory per backup, and combined into dir by combine. progress, when
// set, is told the bytes written.
func RestoreChain(repo Store, chain []state.Backup, dir string, progress func(int64), combine Combiner) (map[string]string, error) {
	layout, err := Layout(chain)
	if err != nil {
		return nil, err
	}
	c := &counter{w: io.Discard, progress: progress}
	extract := func(b state.Backup, f func(io.Reader) error) error {
		rc, err := Open(repo, b)
		if err != nil {
			return fmt.Errorf("restore %s: %w", b.ID, err)
		}
		defer rc.Close()
		if err := f(io.TeeReader(rc, c)); err != nil {
			return fmt.Errorf("restore %s: %w", b.ID, err)
		}
		return nil
	}
	switch layout {
	case LayoutLogical:
		// The script itself: a fresh cluster loads it with psql -f.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		err := extract(chain[0], func(r io.Reader) error {
			f, err := os.OpenFile(filepath.Join(dir, "dumpall.sql"), os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, r); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		})
		return map[string]string{}, err
	case LayoutCombine:
		if combine == nil {
			return nil, fmt.Errorf("restore %s: a PostgreSQL 17 incremental chain needs pg_combinebackup, which this runtime cannot run here", chain[len(chain)-1].ID)
		}
		// The parts go into a directory made here, fresh (MkdirTemp), beside
		// dir: nothing that existed before is written into or removed
		// afterwards, and no name can be a symlink planted in advance. It
		// is traversable (0711) so that pg_combinebackup, running as the
		// PostgreSQL user, reaches the parts it is given.
		partsDir, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".parts-")
		if err != nil {
			return nil, fmt.Errorf("restore %s: %w", chain[len(chain)-1].ID, err)
		}
		defer os.RemoveAll(partsDir)
		if err := os.Chmod(partsDir, 0o711); err != nil {
			return nil, err
		}
		var parts []string
		for i, b := range chain {
			part := filepath.Join(partsDir, fmt.Sprintf("part%d", i))
			parts = append(parts, part)
			if err := extract(b, func(r io.Reader) error { return Extract(r, part) }); err != nil {
				return nil, err
			}
			if err := copyManifest(repo, b, part); err != nil {
				return nil, err
			}
		}
		if err := combine(parts, dir); err != nil {
			return nil, fmt.Errorf("restore %s: %w", chain[len(chain)-1].ID, err)
		}
	default:
		for i, b := range chain {
			if i == 0 {
				err = extract(b, func(r io.Reader) error { return Extract(r, dir) })
			} else {
				err = extract(b, func(r io.Reader) error { return extractWAL(r, dir) })
			}
			if err != nil {
				return nil, err
			}
		}
		if layout == LayoutWAL {
			if err := os.WriteFile(filepath.Join(dir, "recovery.signal"), nil, 0o600); err != nil {
				return nil, err
			}
		}
		if err := copyManifest(repo, chain[0], dir); err != nil {
			return nil, err
		}
	}
	_ = os.Remove(filepath.Join(dir, "standby.signal"))
	return RecoverySettings(chain), nil
}

// copyManifest puts a backup's server manifest into the directory it was
// restored to, as pg_basebackup -Fp leaves it: pg_combinebackup and
// pg_verifybackup read it there.
func copyManifest(repo Store, b state.Backup, dir string) error {
	if b.ServerManifest == "" {
		return nil
	}
	data, err := ServerManifest(repo, b)
	if err != nil {
		return fmt.Errorf("restore %s: %w", b.ID, err)
	}
	return os.WriteFile(filepath.Join(dir, ServerManifestName), data, 0o600)
}

var segmentRe = regexp.MustCompile(`^pg_wal/([0-9A-F]{24}|[0-9A-F]{8}\.history)$`)

// extractWAL writes the segments (and timeline history files) of a WAL
// backup into the restored data directory's pg_wal. A later copy of a segment replaces an earlier one:
// chains stream each boundary segment again, more complete.
func extractWAL(r io.Reader, dataDir string) error {
	return untar(r, dataDir, os.O_TRUNC, func(h *tar.Header) error {
		if !segmentRe.MatchString(h.Name) || h.Typeflag != tar.TypeReg {
			return fmt.Errorf("WAL backup entry %q is not a WAL segment or timeline history file", h.Name)
		}
		return nil
	})
}
