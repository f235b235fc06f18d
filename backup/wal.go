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
	"sort"

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
	// ReceiveWAL streams the WAL from the segment holding start up to
	// stop, segment by segment, and returns the timeline it came from.
	ReceiveWAL(ctx context.Context, start, stop state.LSN, sink func(Segment) error) (int, error)
}

// WAL takes an incremental or differential backup as the WAL written since
// its reference: parent for an incremental (the newest backup of any
// type), the chain's full for a differential. A differential carries over
// the WAL the chain's later backups already hold (carry, oldest first) and
// adds what was written since, so that it restores with its full alone.
//
// This is how pgha builds incremental chains on every PostgreSQL version:
// restore = the full, then replay up to the backup's restore point.
func WAL(ctx context.Context, o Options, typ string, ref state.Backup, carry []state.Backup, since state.LSN, src WALSource) (state.Backup, error) {
	if typ != "incremental" && typ != "differential" {
		return state.Backup{}, fmt.Errorf("a WAL backup is incremental or differential, not %q", typ)
	}
	b := o.record(typ)
	b.Format, b.Parent, b.Root, b.StartLSN = FormatWAL, ref.ID, ref.Root, ref.StopLSN
	if b.Root == "" {
		b.Root = ref.ID
	}
	b.RestorePoint = b.ID
	stop, err := src.RestorePoint(ctx, b.RestorePoint)
	if err != nil {
		return b, fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.StopLSN = stop.String()
	err = o.store(&b, "wal.tar", func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, m := range carry {
			if err := copyWAL(o.Repository, m, tw); err != nil {
				return fmt.Errorf("carry over the WAL of %s: %w", m.ID, err)
			}
		}
		tl, err := src.ReceiveWAL(ctx, since, stop, func(s Segment) error {
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
		if ref.Timeline > 0 && tl != ref.Timeline {
			return fmt.Errorf("the primary is on timeline %d, %s on %d: a failover happened since, take a full backup", tl, ref.ID, ref.Timeline)
		}
		b.Timeline = tl
		return tw.Close()
	})
	if err != nil {
		return b, err
	}
	return b, o.finish(&b)
}

// copyWAL appends the segments of a stored WAL backup to tw.
func copyWAL(repo string, m state.Backup, tw *tar.Writer) error {
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

// Chain returns what a restore of id needs, full first: the full, then
// each backup on the way to id by parent links. A differential's parent
// is its full, so its chain has two members whatever came between.
func Chain(all []state.Backup, id string) ([]state.Backup, error) {
	byID := map[string]state.Backup{}
	for _, b := range all {
		byID[b.ID] = b
	}
	var chain []state.Backup
	for cur := id; cur != ""; {
		b, ok := byID[cur]
		if !ok {
			if len(chain) == 0 {
				return nil, fmt.Errorf("no backup %s", id)
			}
			return nil, fmt.Errorf("backup %s needs %s, which is gone: it cannot be restored", id, cur)
		}
		if b.Status != "complete" {
			return nil, fmt.Errorf("backup %s needs %s, which is %s", id, b.ID, b.Status)
		}
		chain = append(chain, b)
		if len(chain) > 1000 {
			return nil, fmt.Errorf("backup %s: its parent links loop", id)
		}
		cur = b.Parent
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	if chain[0].Type != "full" {
		return nil, fmt.Errorf("backup %s: its chain starts at %s, a %s, not a full", id, chain[0].ID, chain[0].Type)
	}
	return chain, nil
}

// Dependents returns the IDs of every backup that needs id to restore.
func Dependents(all []state.Backup, id string) []string {
	var out []string
	for _, b := range all {
		if b.ID == id {
			continue
		}
		if c, err := chainIDs(all, b.ID); err == nil && contains(c, id) {
			out = append(out, b.ID)
		}
	}
	sort.Strings(out)
	return out
}

func chainIDs(all []state.Backup, id string) ([]string, error) {
	byID := map[string]state.Backup{}
	for _, b := range all {
		byID[b.ID] = b
	}
	var ids []string
	for cur := id; cur != "" && len(ids) <= 1000; cur = byID[cur].Parent {
		if _, ok := byID[cur]; !ok {
			return ids, fmt.Errorf("%s missing", cur)
		}
		ids = append(ids, cur)
	}
	return ids, nil
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// RestoreChain writes a chain (full first) into dir, a new directory, and
// returns the recovery settings the restored server needs to start: none
// for a full alone; for a WAL chain, replay to the last backup's restore
// point, then promote. progress, when set, is told the bytes written.
func RestoreChain(repo string, chain []state.Backup, dir string, progress func(int64)) (map[string]string, error) {
	if len(chain) == 0 {
		return nil, errors.New("nothing to restore")
	}
	c := &counter{w: io.Discard, progress: progress}
	for i, b := range chain {
		rc, err := Open(repo, b)
		if err != nil {
			return nil, fmt.Errorf("restore %s: %w", b.ID, err)
		}
		r := io.TeeReader(rc, c)
		if i == 0 {
			if b.Format != "" && b.Format != FormatBase {
				rc.Close()
				return nil, fmt.Errorf("restore %s: a chain starts with a base backup, this is %q", b.ID, b.Format)
			}
			err = Extract(r, dir)
		} else {
			err = extractWAL(r, filepath.Join(dir, "pg_wal"))
		}
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("restore %s: %w", b.ID, err)
		}
	}
	_ = os.Remove(filepath.Join(dir, "standby.signal"))
	last := chain[len(chain)-1]
	if len(chain) == 1 {
		return map[string]string{}, nil
	}
	if err := os.WriteFile(filepath.Join(dir, "recovery.signal"), nil, 0o600); err != nil {
		return nil, err
	}
	// Recovery reads the WAL from pg_wal; an archive recovery insists on
	// a restore_command, and one that finds nothing sends it there.
	return map[string]string{
		"restore_command":          "false",
		"recovery_target_name":     last.RestorePoint,
		"recovery_target_action":   "promote",
		"recovery_target_timeline": "current",
	}, nil
}

var segmentRe = regexp.MustCompile(`^pg_wal/[0-9A-F]{24}$`)

// extractWAL writes the segments of a WAL backup into walDir. A later
// copy of a segment replaces an earlier one: chains stream each boundary
// segment again, more complete.
func extractWAL(r io.Reader, walDir string) error {
	if err := os.MkdirAll(walDir, 0o700); err != nil {
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
		if !segmentRe.MatchString(h.Name) || h.Typeflag != tar.TypeReg {
			return fmt.Errorf("WAL backup entry %q is not a WAL segment", h.Name)
		}
		f, err := os.OpenFile(filepath.Join(walDir, filepath.Base(h.Name)), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
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
	}
}
