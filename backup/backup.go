// Package backup takes, stores and reads back physical backups: a base
// backup streamed from the server, compressed by pgha, written with its own
// manifest into a repository directory so that it is restorable even when
// the catalog is not. The pure rules it follows (schedule, retention,
// chains, stored formats) are in backup/policy, which the planner imports
// without this package's disk I/O.
package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/state"
)

// Streamer produces a tar-format base backup (with the WAL that makes it
// consistent) and, where the server sends one, its backup_manifest. With a
// parent manifest it produces a PostgreSQL 17 incremental backup.
type Streamer interface {
	BaseBackup(ctx context.Context, w, manifest io.Writer, parent []byte) (BaseInfo, error)
}

// BaseInfo is where a base backup's WAL starts and ends.
type BaseInfo struct {
	StartLSN, StopLSN string
	Timeline          int
}

// Options say where and how a backup is written.
type Options struct {
	Repository  Store
	Cluster     string
	Node        string // the node backed up
	Compression string // gzip | zstd | none
	Level       int    // 0 = the compressor's default
	// Node facts recorded with the backup.
	ServerVersion int
	SystemID      string
	Now           func() time.Time
	// Progress, when set, is told the uncompressed bytes written so far.
	Progress func(done int64)
}

// ManifestName is the file each backup directory holds beside its data.
const ManifestName = "manifest.json"

// Full takes a full physical backup of src into the repository and
// returns its record; the manifest is written before Full returns, so the
// repository alone says everything needed to restore.
func Full(ctx context.Context, o Options, src Streamer) (state.Backup, error) {
	b := o.record("full")
	b.Format = policy.FormatBase
	return b, o.base(ctx, &b, src, nil)
}

// Incremental takes a PostgreSQL 17 block-level incremental backup of
// type typ relative to ref (the chain's newest backup for an incremental,
// its full for a differential): the server sends only the blocks changed
// since ref, as its WAL summaries record them. Restore combines the chain
// with pg_combinebackup.
func Incremental(ctx context.Context, o Options, typ string, ref state.Backup, src Streamer) (state.Backup, error) {
	if ref.ServerManifest == "" {
		return state.Backup{}, fmt.Errorf("backup %s has no server manifest to build an incremental on: take a full backup", ref.ID)
	}
	parent, err := ServerManifest(o.Repository, ref)
	if err != nil {
		return state.Backup{}, err
	}
	b := o.child(typ, ref)
	b.Format = policy.FormatIncremental
	return b, o.base(ctx, &b, src, parent)
}

// base stores a base backup (full or incremental) and the server's manifest.
func (o Options) base(ctx context.Context, b *state.Backup, src Streamer, parent []byte) error {
	var info BaseInfo
	var manifest bytes.Buffer
	err := o.store(ctx, b, "base.tar", func(w io.Writer) error {
		var err error
		info, err = src.BaseBackup(ctx, w, &manifest, parent)
		return err
	})
	if err != nil {
		return err
	}
	b.StartLSN, b.Timeline, b.StopLSN = info.StartLSN, info.Timeline, info.StopLSN
	if manifest.Len() > 0 {
		// The server's own manifest: what pg_verifybackup checks a restored
		// directory against, and what a PostgreSQL 17 incremental builds on.
		rel := path.Join(o.Cluster, b.ID, ServerManifestName)
		err := o.Repository.Put(ctx, rel, func(w io.Writer) error {
			_, err := w.Write(manifest.Bytes())
			return err
		})
		if err != nil {
			return fmt.Errorf("backup %s: %w", b.ID, err)
		}
		b.ServerManifest = rel
	}
	return o.finish(ctx, b)
}

// Dumper writes a logical dump of the whole cluster: a SQL script.
type Dumper interface {
	DumpAll(ctx context.Context, w io.Writer) error
}

// Logical takes a full logical backup (pg_dumpall): portable across
// major versions and architectures, restored into a fresh cluster with
// psql. It has no WAL position and starts no chain.
func Logical(ctx context.Context, o Options, src Dumper, timeline int) (state.Backup, error) {
	b := o.record("full")
	b.Method, b.Format, b.Timeline = "logical", policy.FormatLogical, timeline
	if err := o.store(ctx, &b, "dumpall.sql", func(w io.Writer) error { return src.DumpAll(ctx, w) }); err != nil {
		return b, err
	}
	return b, o.finish(ctx, &b)
}

// ServerManifestName is the server's backup_manifest beside a base backup.
const ServerManifestName = "backup_manifest"

// ParseReport reads the WAL range from pg_basebackup -v's report, for
// servers pgha streams through pg_basebackup.
func ParseReport(r string) BaseInfo {
	var i BaseInfo
	i.StartLSN, i.Timeline, i.StopLSN = parseReport(r)
	return i
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

// record starts the catalog record of a backup of type typ taken now.
// IDs are the start time to the second and the type; a second backup of
// one type within a second gets a counter, never another's place.
func (o Options) record(typ string) state.Backup {
	started := o.now()
	id := started.Format("20060102T150405Z") + "-" + typ
	st := o.Repository
	for n := 2; ; n++ {
		names, err := st.List(context.Background(), path.Join(o.Cluster, id))
		if err != nil || len(names) == 0 {
			break
		}
		id = fmt.Sprintf("%s-%s-%d", started.Format("20060102T150405Z"), typ, n)
	}
	b := state.Backup{ID: id, Cluster: o.Cluster, Type: typ, Method: "physical",
		Node: o.Node, ServerVersion: o.ServerVersion, SystemID: o.SystemID, Started: started, Compression: o.Compression, Status: "running"}
	b.Root = b.ID
	return b
}

// child starts the record of a backup that builds on ref, in ref's chain.
func (o Options) child(typ string, ref state.Backup) state.Backup {
	b := o.record(typ)
	b.Parent, b.Root = ref.ID, ref.Root
	if b.Root == "" {
		b.Root = ref.ID
	}
	return b
}

// store writes what fill produces, compressed, into the backup's place
// in the repository under name (plus the compression's extension); the
// object appears only when complete.
func (o Options) store(ctx context.Context, b *state.Backup, name string, fill func(io.Writer) error) error {
	key := path.Join(o.Cluster, b.ID, name+map[string]string{"gzip": ".gz", "zstd": ".zst", "none": ""}[o.Compression])
	hash := sha256.New()
	var raw, stored *counter
	err := o.Repository.Put(ctx, key, func(f io.Writer) error {
		stored = &counter{w: io.MultiWriter(f, hash)}
		comp, err := compressor(stored, o.Compression, o.Level)
		if err != nil {
			return err
		}
		raw = &counter{w: comp, progress: o.Progress}
		err = fill(raw)
		if cerr := comp.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		b.Status = "failed"
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.DatabaseBytes, b.StoredBytes = raw.n, stored.n
	b.Checksum = "sha256:" + hex.EncodeToString(hash.Sum(nil))
	b.Path = key
	return nil
}

// finish marks the backup complete and writes its manifest.
func (o Options) finish(ctx context.Context, b *state.Backup) error {
	b.Finished = o.now()
	b.Status = "complete"
	return writeManifest(ctx, o.Repository, *b)
}

// compressor returns the writer that compresses a backup: chunks
// compressed in parallel (see parallelWriter), readable as one stream.
func compressor(w io.Writer, kind string, level int) (io.WriteCloser, error) {
	switch kind {
	case "gzip":
		if level == 0 {
			level = gzip.DefaultCompression
		}
		if _, err := gzip.NewWriterLevel(io.Discard, level); err != nil {
			return nil, err
		}
		return newParallel(w, gzipChunk(level)), nil
	case "zstd":
		enc, err := zstdChunk(level)
		if err != nil {
			return nil, err
		}
		return newParallel(w, enc), nil
	case "none", "":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", kind)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type counter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}

var (
	startRe = regexp.MustCompile(`write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)`)
	endRe   = regexp.MustCompile(`write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)`)
)

// parseReport reads the WAL range from pg_basebackup -v's report.
func parseReport(r string) (start string, timeline int, stop string) {
	if m := startRe.FindStringSubmatch(r); m != nil {
		start = m[1]
		fmt.Sscan(m[2], &timeline)
	}
	if m := endRe.FindStringSubmatch(r); m != nil {
		stop = m[1]
	}
	return start, timeline, stop
}

func writeManifest(ctx context.Context, st Store, b state.Backup) error {
	js, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	err = st.Put(ctx, path.Join(b.Cluster, b.ID, ManifestName), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("write manifest of %s: %w", b.ID, err)
	}
	return nil
}

// Repository lists the backups a repository holds for a cluster, newest
// first, from their manifests alone.
func Repository(st Store, cluster string) ([]state.Backup, error) {
	ctx := context.Background()
	names, err := st.List(ctx, cluster)
	if err != nil {
		return nil, err
	}
	var out []state.Backup
	for _, n := range names {
		if path.Base(n) != ManifestName || path.Dir(path.Dir(n)) != cluster {
			continue
		}
		js, err := readObject(ctx, st, n)
		if err != nil {
			return nil, err
		}
		var b state.Backup
		if err := json.Unmarshal(js, &b); err != nil {
			return nil, fmt.Errorf("read %s: %w", Where(st, n), err)
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	return out, nil
}

func readObject(ctx context.Context, st Store, name string) ([]byte, error) {
	r, err := st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err) // a store's reader (S3's checksum) may not name it
	}
	return data, nil
}

// ServerManifest reads the server's backup_manifest kept with b.
func ServerManifest(repo Store, b state.Backup) ([]byte, error) {
	if b.ServerManifest == "" {
		return nil, fmt.Errorf("backup %s kept no server manifest", b.ID)
	}
	data, err := readObject(context.Background(), repo, b.ServerManifest)
	if err != nil {
		return nil, fmt.Errorf("read the server manifest of %s: %w", b.ID, err)
	}
	return data, nil
}

// ErrChecksum means a stored backup no longer matches its manifest.
var ErrChecksum = errors.New("checksum mismatch")

// Open verifies a backup's stored file against its checksum and returns a
// reader of the uncompressed stream.
func Open(st Store, b state.Backup) (io.ReadCloser, error) {
	ctx := context.Background()
	where := Where(st, b.Path)
	f, err := st.Get(ctx, b.Path)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != b.Checksum {
		return nil, fmt.Errorf("%s: %w (manifest %s, file %s)", where, ErrChecksum, b.Checksum, got)
	}
	// Read again for the data; a changed file fails the decompression.
	if f, err = st.Get(ctx, b.Path); err != nil {
		return nil, err
	}
	switch b.Compression {
	case "gzip":
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		return readCloser{zr, f}, nil
	case "zstd":
		zr, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		return readCloser{zr.IOReadCloser(), f}, nil
	}
	return f, nil
}

type readCloser struct {
	io.Reader
	f io.Closer
}

func (r readCloser) Close() error { return r.f.Close() }

// Expire deletes a backup's stored file and the server's manifest kept
// with it, and keeps its own manifest, marked expired, as a tombstone:
// the repository still says what was there and why it is gone, and a
// catalog that missed the expiry can be repaired from it.
func Expire(st Store, b state.Backup) (state.Backup, error) {
	ctx := context.Background()
	for _, name := range []string{b.Path, b.ServerManifest} {
		if name == "" {
			continue
		}
		if err := st.Delete(ctx, name); err != nil {
			return b, fmt.Errorf("expire %s: %w", b.ID, err)
		}
	}
	b.Status = "expired"
	if err := writeManifest(ctx, st, b); err != nil {
		return b, fmt.Errorf("expire %s: %w", b.ID, err)
	}
	return b, nil
}
