package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/pitr"
	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/local"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// Backup takes a backup of the given type now (`pgha backup`, and apply
// for a backup the schedule says is due). It does not take the cluster
// lock: a long backup must never hold up a failover.
//
// A full streams a base backup from the source node; an incremental or a
// differential stores the primary's WAL since its reference backup, read
// through the backup slot, up to a restore point named after it. The slot
// moves past the WAL only once the backup is stored.
//
// What it says goes to r (nil: to nobody): its lines as Messages, the
// backup stored as a BackupDone, and last the Outcome, which carries the
// error Backup returns.
func (e *Env) Backup(ctx context.Context, kind string, r Reporter) (b state.Backup, err error) {
	r = reporter(r)
	say := messages(r)
	defer func() {
		say.Flush()
		r.Report(report.Outcome{Operation: "backup", Err: err})
	}()
	return e.backup(ctx, kind, say, func(d report.BackupDone) { r.Report(d) })
}

// backup takes the backup, printing its lines to out and handing the
// backup stored to done before the catalog records it: `pgha backup`
// reports it as an event, apply says its Summary under the action.
func (e *Env) backup(ctx context.Context, kind string, out io.Writer, done func(report.BackupDone)) (state.Backup, error) {
	bk := e.Cfg.Backup
	if bk == nil {
		return state.Backup{}, fmt.Errorf("cluster.hcl declares no backup block; add `backup {}` for the defaults")
	}
	if bk.Method == "logical" && kind != "full" {
		return state.Backup{}, fmt.Errorf("method \"logical\" (pg_dumpall) takes full backups only; incremental and differential backups need method = \"physical\"")
	}
	s := e.Observe(ctx)
	var primary *config.Node
	for _, cn := range e.Cfg.Nodes {
		if s.Node(cn.Name).Role() == state.RolePrimary {
			primary = cn
		}
	}
	if primary == nil {
		return state.Backup{}, fmt.Errorf("no primary answers: pgha backs up a running cluster; `pgha plan` says why it is down")
	}
	pn := s.Node(primary.Name)
	o := backup.Options{Repository: e.Repo(), Cluster: e.Cfg.Name, Node: primary.Name,
		Compression: bk.Compression, Level: bk.Level, ServerVersion: pn.ServerVersion, SystemID: pn.SystemID, Now: e.Now}
	admin := e.superuser(primary)
	var b state.Backup
	var err error
	if bk.Method == "physical" && !policy.WALSlot(pn.ServerVersion) {
		// PostgreSQL 17: the standbys summarize the WAL too, so that a
		// block-level incremental continues the chain on whichever of
		// them becomes primary (ALTER SYSTEM works on a standby).
		e.standbySlots(ctx, s, primary, out, func(ep postgres.Endpoint) error { return e.summarizeWAL(ctx, ep, pn, io.Discard) })
	}
	start := time.Now()
	switch {
	case bk.Method == "logical":
		src := e.backupSource(s)
		o.Node = src.Name
		fmt.Fprintf(out, "Dumping %s (%s) with pg_dumpall into %s...\n", src.Name, s.Node(src.Name).Role(), bk.Repository)
		o.Progress = progress(out, 0)
		b, err = backup.Logical(ctx, o, dumper{e: e, n: src}, pn.Timeline)
	case kind == "full":
		if err := e.summarizeWAL(ctx, admin, pn, out); err != nil {
			return b, err
		}
		src := e.backupSource(s)
		n := s.Node(src.Name)
		o.Node = src.Name
		// The slot holds the WAL from here on, so the next incremental
		// finds every segment since this full; on the standbys too, so
		// that the chain continues on whichever node becomes primary.
		if policy.WALSlot(pn.ServerVersion) {
			if err := e.db().CreateSlot(ctx, admin, config.BackupSlot); err != nil {
				return b, err
			}
			e.standbySlots(ctx, s, primary, out, func(ep postgres.Endpoint) error { return e.db().CreateSlot(ctx, ep, config.BackupSlot) })
		}
		fmt.Fprintf(out, "Backing up %s (%s) into %s...\n", src.Name, n.Role(), bk.Repository)
		o.Progress = progress(out, pn.DatabaseBytes)
		b, err = backup.Full(ctx, o, streamer{e: e, n: src})
	case kind == "incremental" || kind == "differential":
		all, rerr := backup.Repository(o.Repository, e.Cfg.Name)
		if rerr != nil {
			return b, rerr
		}
		ref, carry, since, rerr := policy.Reference(all, kind)
		if rerr != nil {
			return b, rerr
		}
		if ref.SystemID != "" && ref.SystemID != pn.SystemID {
			return b, fmt.Errorf("the newest full %s is of another database system (%s, the primary is %s): take a full backup", ref.Root, ref.SystemID, pn.SystemID)
		}
		if native(pn, ref) {
			// PostgreSQL 17: only the blocks changed since ref, from the
			// server's WAL summaries.
			fmt.Fprintf(out, "Backing up the blocks of %s changed since %s %s into %s...\n", primary.Name, ref.Type, ref.ID, bk.Repository)
			o.Progress = progress(out, 0)
			b, err = backup.Incremental(ctx, o, kind, ref, streamer{e: e, n: primary})
			if err != nil {
				err = fmt.Errorf("%w\n(a block-level incremental needs summarize_wal on since %s was taken; `pgha backup -type full` starts a new chain)", err, ref.ID)
			}
			break
		}
		fmt.Fprintf(out, "Backing up the WAL of %s since %s %s into %s...\n", primary.Name, ref.Type, ref.ID, bk.Repository)
		o.Progress = progress(out, 0)
		b, err = backup.WAL(ctx, o, kind, ref, carry, since, walSource{e: e, n: primary})
	default:
		return b, fmt.Errorf("unknown backup type %q: full, incremental or differential", kind)
	}
	if err != nil {
		return b, err
	}
	if stop, perr := state.ParseLSN(b.StopLSN); perr == nil && policy.WALSlot(pn.ServerVersion) {
		if err := e.db().AdvanceSlot(ctx, admin, config.BackupSlot, stop); err != nil {
			fmt.Fprintf(out, "Warning: %v; the slot keeps WAL the repository already holds until the next backup.\n", err)
		}
		// A standby moves its slot only as far as it has replayed.
		e.standbySlots(ctx, s, primary, out, func(ep postgres.Endpoint) error { return e.db().AdvanceSlot(ctx, ep, config.BackupSlot, stop) })
	}
	done(report.BackupDone{Backup: b, Elapsed: time.Since(start)})
	if e.Catalog != nil {
		if err := e.Catalog.PutBackup(ctx, b); err != nil {
			// The repository holds the manifest: nothing is lost, and the
			// next plan shows the catalog drift for apply to repair.
			fmt.Fprintf(out, "Warning: the backup is complete in the repository, but the catalog could not record it (%v); the next apply records it.\n", err)
		}
	}
	return b, nil
}

// walBackups says whether this cluster's incrementals store WAL on a
// server of this version, and so every node keeps the backup slot.
func (e *Env) walBackups(serverVersion int) bool {
	bk := e.Cfg.Backup
	return bk != nil && bk.Method == "physical" && serverVersion > 0 && policy.WALSlot(serverVersion)
}

// native says whether an incremental on this primary is block-level
// (PostgreSQL 17 and a chain whose newest backup kept the server's
// manifest) rather than WAL.
func native(pn *state.Node, ref state.Backup) bool {
	return !policy.WALSlot(pn.ServerVersion) && ref.ServerManifest != "" && ref.Format != policy.FormatWAL
}

// summarizeWAL turns on WAL summarization on a PostgreSQL 17 primary
// before a full backup (and on its standbys before every backup), so that the block-level incrementals of its chain
// find the summaries they need. It is a reload-only setting; pgha sets it
// with ALTER SYSTEM, next to its own pgha.conf, and says so.
func (e *Env) summarizeWAL(ctx context.Context, ep postgres.Endpoint, pn *state.Node, out io.Writer) error {
	if policy.WALSlot(pn.ServerVersion) {
		return nil // before 17 incrementals are WAL-based
	}
	on, err := e.db().Setting(ctx, ep, "summarize_wal")
	if err != nil || on == "on" {
		return err
	}
	if err := e.db().Exec(ctx, ep, "ALTER SYSTEM SET summarize_wal = on"); err != nil {
		return fmt.Errorf("turn on summarize_wal: %w", err)
	}
	if err := e.db().Reload(ctx, ep); err != nil {
		return err
	}
	fmt.Fprintln(out, "summarize_wal is now on (ALTER SYSTEM): incremental backups of this chain send only changed blocks.")
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if v, _ := e.db().Setting(wctx, ep, "summarize_wal"); v == "on" {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("summarize_wal did not take effect after a reload")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// standbySlots runs f on every standby that answers: for its backup slot
// (before 17) or its WAL summaries (17).
// A standby that does not answer is left to the next plan, which says so.
func (e *Env) standbySlots(ctx context.Context, s *state.Cluster, primary *config.Node, out io.Writer, f func(postgres.Endpoint) error) {
	for _, cn := range e.Cfg.Nodes {
		if cn.Name == primary.Name || s.Node(cn.Name).Role() != state.RoleStandby {
			continue
		}
		if err := f(e.superuser(cn)); err != nil {
			fmt.Fprintf(out, "Warning: backup slot on standby %s: %v\n", cn.Name, err)
		}
	}
}

// walSource reads a WAL backup from the primary: the restore point as the
// superuser, the WAL through the backup slot as the replication user.
type walSource struct {
	e *Env
	n *config.Node
}

func (w walSource) RestorePoint(ctx context.Context, name string) (state.LSN, error) {
	return w.e.db().RestorePoint(ctx, w.e.superuser(w.n), name)
}

func (w walSource) ReceiveWAL(ctx context.Context, timeline int, start, stop state.LSN, sink func(backup.Segment) error) (int, error) {
	return w.e.db().ReceiveWAL(ctx, w.e.replicator(w.n), config.BackupSlot, timeline, start, stop, func(s postgres.WALSegment) error {
		return sink(backup.Segment{Name: s.Name, Data: s.Data})
	})
}

// progress prints how far a long transfer is, every few seconds: bytes,
// rate and, when the total is known, the share done and the time left.
func progress(out io.Writer, total int64) func(int64) {
	start := time.Now()
	last := start
	return func(done int64) {
		now := time.Now()
		if now.Sub(last) < 2*time.Second {
			return
		}
		last = now
		rate := float64(done) / now.Sub(start).Seconds()
		line := fmt.Sprintf("  %s, %s/s", bytesize.Format(done), bytesize.Format(int64(rate)))
		if total > done && rate > 0 {
			eta := time.Duration(float64(total-done) / rate * float64(time.Second))
			line = fmt.Sprintf("  %s of ~%s (%.0f%%), %s/s, ETA %s", bytesize.Format(done), bytesize.Format(total), 100*float64(done)/float64(total),
				bytesize.Format(int64(rate)), eta.Round(time.Second))
		}
		fmt.Fprintln(out, line)
	}
}

// meter counts the bytes written through it and reports the running
// total to a progress printer.
type meter struct {
	n      int64
	report func(int64)
}

func newMeter(out io.Writer, total int64) *meter { return &meter{report: progress(out, total)} }

func (m *meter) Write(b []byte) (int, error) {
	m.n += int64(len(b))
	m.report(m.n)
	return len(b), nil
}

// backupSource is the primary, or a streaming standby when the backup
// block asks for one.
func (e *Env) backupSource(s *state.Cluster) *config.Node {
	var primary, standby *config.Node
	for _, cn := range e.Cfg.Nodes {
		n := s.Node(cn.Name)
		switch {
		case n.Role() == state.RolePrimary:
			primary = cn
		case n.Role() == state.RoleStandby && n.Upstream != nil && n.Upstream.Status == "streaming" && standby == nil:
			standby = cn
		}
	}
	if e.Cfg.Backup.Source == "standby" && standby != nil {
		return standby
	}
	return primary
}

// Backups lists the backups from the catalog, or from the repository's
// manifests when the catalog does not answer; it says which.
func (e *Env) Backups(ctx context.Context) ([]state.Backup, string, error) {
	if e.Catalog != nil {
		if list, err := e.Catalog.Backups(ctx); err == nil {
			return list, "catalog", nil
		}
	}
	if e.Cfg.Backup == nil {
		return nil, "", fmt.Errorf("cluster.hcl declares no backup block")
	}
	list, err := backup.Repository(e.Repo(), e.Cfg.Name)
	return list, "repository", err
}

type dumper struct {
	e *Env
	n *config.Node
}

func (d dumper) DumpAll(ctx context.Context, w io.Writer) error {
	return d.e.Runtime.DumpAll(ctx, d.n, w)
}

type streamer struct {
	e *Env
	n *config.Node
}

// BaseBackup streams over the replication protocol straight into pgha's
// compressor (any runtime: pgha reaches every node); servers older than
// PostgreSQL 15 go through pg_basebackup next to the node.
func (s streamer) BaseBackup(ctx context.Context, w, manifest io.Writer, parent []byte) (backup.BaseInfo, error) {
	r, err := s.e.db().BaseBackup(ctx, s.e.replicator(s.n), "pgha", w, manifest, parent)
	if errors.Is(err, postgres.ErrOldServer) && parent == nil {
		report, err := s.e.Runtime.BaseBackup(ctx, s.n, w)
		return backup.ParseReport(report), err
	}
	if err != nil {
		return backup.BaseInfo{}, err
	}
	return backup.BaseInfo{StartLSN: r.Start.String(), StopLSN: r.Stop.String(), Timeline: r.Timeline}, nil
}

// VerifyBackup checks a backup and the chain it needs against their
// manifests (each stored file's checksum, then each whole compressed tar
// stream) and, with restore, restores the chain into a scratch instance,
// starts it, waits until recovery reached the backup's moment, and runs a
// query. The result is recorded on the backup's catalog record (see
// recordVerify). Its lines go to r as Messages (nil: to nobody), and last
// the Outcome of "verify".
func (e *Env) VerifyBackup(ctx context.Context, id string, restore bool, r Reporter) (err error) {
	r = reporter(r)
	say := messages(r)
	defer func() {
		say.Flush()
		r.Report(report.Outcome{Operation: "verify", Err: err})
	}()
	if e.Cfg.Backup == nil {
		// The catalog may still list backups; their files are in a
		// repository this file no longer names.
		return fmt.Errorf("cluster.hcl declares no backup block, so no repository to verify %s in", id)
	}
	chain, err := e.chain(ctx, id)
	if err != nil {
		return err // no such backup: nothing to record
	}
	err = e.verifyChain(ctx, id, chain, restore, say)
	mode := state.VerifyRead
	if restore {
		mode = state.VerifyRestore
	}
	e.recordVerify(ctx, id, mode, 0, err, say)
	return err
}

// verifyReasonMax bounds the reason a failed verify records: the first
// line of the error, which names the backup and what failed (a restore's
// error goes on with the scratch server's log, which is for the person
// watching, not for the catalog).
const verifyReasonMax = 300

// recordVerify writes a verify's verdict on the backup's catalog record,
// for `pgha backup list`, the API and the metrics. A verify cut short
// (Ctrl-C, the context ended) says nothing about the backup and is not
// recorded; without a catalog there is nowhere to record it, which the
// output says.
func (e *Env) recordVerify(ctx context.Context, id, mode string, took time.Duration, verr error, out io.Writer) {
	if ctx.Err() != nil || errors.Is(verr, context.Canceled) || errors.Is(verr, context.DeadlineExceeded) {
		return
	}
	if e.Catalog == nil {
		fmt.Fprintln(out, "No catalog is declared: the result is not recorded.")
		return
	}
	result := state.VerifyPassed
	if verr != nil {
		reason, _, _ := strings.Cut(verr.Error(), "\n")
		if r := []rune(reason); len(r) > verifyReasonMax {
			reason = string(r[:verifyReasonMax-1]) + "…"
		}
		result = "failed: " + reason
	}
	rctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
	defer cancel()
	if _, err := e.Catalog.RecordVerify(rctx, id, e.now(), result, mode, took); err != nil {
		fmt.Fprintf(out, "Warning: the catalog could not record this verify (%v).\n", err)
	}
}

// verifyChain is VerifyBackup's check of chain, the backups restoring id
// needs, full first.
func (e *Env) verifyChain(ctx context.Context, id string, chain []state.Backup, restore bool, out io.Writer) error {
	repo := e.Repo()
	for _, b := range chain {
		rc, err := backup.Open(repo, b)
		if err != nil {
			return fmt.Errorf("verify %s: %w", id, err)
		}
		if restore {
			// The restore reads every archive back anyway.
			rc.Close()
			fmt.Fprintf(out, "%s: checksum matches the manifest (%s)\n", b.ID, b.Checksum)
			continue
		}
		if b.Format == policy.FormatLogical {
			_, err = io.Copy(io.Discard, rc) // a SQL script: it decompresses to the end
		} else {
			err = backup.Check(rc)
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("verify %s: %s: %w", id, b.ID, err)
		}
		fmt.Fprintf(out, "%s: checksum matches the manifest (%s) and the archive reads back completely\n", b.ID, b.Checksum)
	}
	if !restore {
		return nil
	}
	r, err := e.StartRestored(ctx, chain, true, out)
	if err != nil {
		return err
	}
	defer r.Stop()
	last := chain[len(chain)-1]
	fmt.Fprintf(out, "%s: restored into a scratch instance, started, and answered (a chain of %d, system id %s)\n", id, len(chain), last.SystemID)
	return nil
}

// Restored is a backup restored and running on a free loopback port (on
// a remote Docker engine, a port of the engine's host).
type Restored struct {
	Host string
	Port int
	Stop func() // stops it and removes every trace
}

// scratchRuntime is a runtime that can restore a chain into a throwaway
// instance and start it; check runs pg_verifybackup on what was restored
// before it starts.
type scratchRuntime interface {
	// With wal, the archived WAL goes into pg_wal after the chain.
	startScratch(ctx context.Context, repo backup.Store, chain []state.Backup, wal *archivedWAL, check bool, out io.Writer) (port int, stop func(), log func() string, err error)
}

// StartRestored restores chain into a scratch instance and starts it on
// a free loopback port, waiting until recovery has reached the backup's
// moment and the server takes writes, and checking it is the backed-up
// system. The caller stops it.
func (e *Env) StartRestored(ctx context.Context, chain []state.Backup, check bool, out io.Writer) (*Restored, error) {
	return e.startRestored(ctx, chain, nil, 120*time.Second, check, out)
}

// startRestored is StartRestored with the archived WAL wal (nil: none)
// replayed after the chain, waiting up to wait for recovery to end.
func (e *Env) startRestored(ctx context.Context, chain []state.Backup, wal *archivedWAL, wait time.Duration, check bool, out io.Writer) (*Restored, error) {
	sr, ok := e.Runtime.(scratchRuntime)
	if !ok {
		return nil, fmt.Errorf("this runtime cannot restore into a scratch instance")
	}
	last := chain[len(chain)-1]
	port, stop, logf, err := sr.startScratch(ctx, e.Repo(), chain, wal, check, out)
	if err != nil {
		if strings.HasPrefix(err.Error(), "restore "+last.ID+":") {
			return nil, err // it says which backup already
		}
		return nil, fmt.Errorf("restore %s: %w", last.ID, err)
	}
	host := "127.0.0.1"
	if h, ok := e.Runtime.(interface{ scratchHost() string }); ok {
		host = h.scratchHost()
	}
	ep := postgres.Endpoint{Host: host, Port: port, User: e.Cfg.Postgres.Superuser, Password: e.Cfg.Postgres.Password.Reveal()}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err = e.db().WaitWritable(wctx, ep)
	if err == nil {
		n := &state.Node{}
		e.db().Observe(ctx, ep, n, nil)
		if !n.Reachable || (n.SystemID != last.SystemID && last.Format != policy.FormatLogical) {
			err = fmt.Errorf("the restored instance answers with system id %q, the backup says %q (%s)", n.SystemID, last.SystemID, n.Error)
		}
	}
	if err != nil {
		log := logf()
		stop()
		return nil, fmt.Errorf("restore %s: %w%s", last.ID, err, withLog([]byte(log)))
	}
	return &Restored{Host: host, Port: port, Stop: stop}, nil
}

// startScratch restores beside the nodes (where the PostgreSQL user can
// reach it; the repository stays private to pgha) and starts the server
// with pgha's settings for a loopback-only instance.
func (l *localRuntime) startScratch(ctx context.Context, repo backup.Store, chain []state.Backup, wal *archivedWAL, check bool, out io.Writer) (int, func(), func() string, error) {
	none := func() string { return "" }
	dir, err := os.MkdirTemp(l.c.Runtime.DataDir, ".restore-"+chain[len(chain)-1].ID+"-")
	if err != nil {
		return 0, nil, none, err
	}
	fail := func(err error) (int, func(), func() string, error) {
		os.RemoveAll(dir)
		return 0, nil, none, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	data := filepath.Join(dir, "data")
	if chain[0].Format == policy.FormatLogical {
		// A dump loads into a fresh cluster, once it runs.
		if err := l.rt.InitDB(ctx, data, l.c.Postgres.Superuser, l.c.Postgres.Password.Reveal()); err != nil {
			return fail(err)
		}
		port, stop, logf, err := l.serve(ctx, dir, data, nil)
		if err != nil {
			return 0, nil, none, err
		}
		if err := l.loadDump(ctx, repo, chain[0], port, out); err != nil {
			stop()
			return 0, nil, none, err
		}
		return port, stop, logf, nil
	}
	recovery, err := restoreLocal(l, repo, chain, wal, data, out)
	if err != nil {
		return fail(err)
	}
	if _, err := os.Stat(filepath.Join(data, backup.ServerManifestName)); err == nil && check {
		if _, err := l.rt.VerifyBackup(ctx, data); err != nil {
			return fail(err)
		}
		fmt.Fprintf(out, "pg_verifybackup: every file of the restored directory matches the server's manifest\n")
	}
	return l.serve(ctx, dir, data, recovery)
}

// serve starts data as a loopback-only server on a free port, with extra
// settings (recovery) on top; stop stops it and removes dir. On failure
// dir is removed and the error carries the server log.
func (l *localRuntime) serve(ctx context.Context, dir, data string, extra map[string]string) (int, func(), func() string, error) {
	none := func() string { return "" }
	cleanup := func() { os.RemoveAll(dir) }
	port, err := freePort()
	if err != nil {
		cleanup()
		return 0, nil, none, err
	}
	settings := map[string]string{"port": fmt.Sprint(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": "",
		"primary_conninfo": "", "primary_slot_name": "", "archive_mode": "off", "ssl": "off"}
	maps.Copy(settings, extra)
	// A loopback-only scratch instance is reached in plain text.
	plain := *l.c
	plain.TLS.Enabled = false
	if err := l.rt.Configure(data, settings, plan.HBA(&plain)); err != nil {
		cleanup()
		return 0, nil, none, err
	}
	logFile := filepath.Join(dir, "postgresql.log")
	logf := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	if err := l.rt.Start(ctx, data, logFile); err != nil {
		defer cleanup()
		return 0, nil, none, fmt.Errorf("the restored data directory does not start: %w%s", err, withLog([]byte(logf())))
	}
	stop := func() {
		_ = l.rt.Stop(context.Background(), data, "immediate")
		cleanup()
	}
	return port, stop, logf, nil
}

// withLog adds the tail of a server log to an error.
func withLog(log []byte) string {
	if len(log) == 0 {
		return ""
	}
	if len(log) > 2000 {
		log = log[len(log)-2000:]
	}
	return "\nserver log (end):\n" + string(log)
}

// loadDump feeds a pg_dumpall script to psql against the server on port.
func (l *localRuntime) loadDump(ctx context.Context, repo backup.Store, b state.Backup, port int, out io.Writer) error {
	pf, done, err := l.superPassfile()
	if err != nil {
		return err
	}
	defer done()
	rc, err := backup.Open(repo, b)
	if err != nil {
		return err
	}
	defer rc.Close()
	script := backup.ForFreshCluster(io.TeeReader(rc, newMeter(out, 0)), l.c.Postgres.Superuser)
	if err := l.rt.LoadSQL(ctx, local.SQLSource{Host: "127.0.0.1", Port: port, User: l.c.Postgres.Superuser, Passfile: pf}, script); err != nil {
		return fmt.Errorf("load %s (backup %s): %w", backup.Where(repo, b.Path), b.ID, err)
	}
	return nil
}

// restoreLocal writes the chain into data on this host, hands it to the
// PostgreSQL user, and returns the recovery settings it starts with.
//
// With wal (a point-in-time restore), the archived WAL goes into pg_wal
// after the chain and recovery stops at the target.
func restoreLocal(l *localRuntime, repo backup.Store, chain []state.Backup, wal *archivedWAL, data string, out io.Writer) (map[string]string, error) {
	var total int64
	for _, b := range chain {
		total += b.DatabaseBytes
	}
	combine := func(parts []string, out string) error { return l.rt.CombineBackup(context.Background(), parts, out) }
	recovery, err := backup.RestoreChain(repo, chain, data, progress(out, total), combine)
	if err != nil {
		return nil, err
	}
	if wal != nil {
		start := time.Now()
		if err := backup.RestoreArchiveWAL(wal.repo, wal.cluster, wal.choice, wal.segSize, wal.histories, data); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "Copied %d archived WAL segments into pg_wal in %s.\n", len(wal.choice.Segments), time.Since(start).Round(time.Millisecond))
		recovery = wal.choice.Settings
	}
	if err := l.rt.Adopt(data); err != nil {
		return nil, err
	}
	return recovery, nil
}

// Restore writes a backup's chain into dir, a new directory, ready to
// start as a PostgreSQL data directory owned by the runtime's user. A WAL
// chain starts in recovery and stops at the backup's restore point. With
// a target instead of an ID (a point-in-time restore), the newest full
// that ended before the target is restored with the archived WAL that
// reaches it, and recovery stops there. It refuses an existing non-empty
// directory: a restore never overwrites data. Its lines go to r as
// Messages (nil: to nobody), and last the Outcome of "restore".
func (e *Env) Restore(ctx context.Context, id string, t pitr.Target, dir string, r Reporter) (err error) {
	r = reporter(r)
	say := messages(r)
	defer func() {
		say.Flush()
		r.Report(report.Outcome{Operation: "restore", Err: err})
	}()
	return e.restore(ctx, id, t, dir, say)
}

// restoreChain is what a restore writes: id's chain, or for a target the
// full and archived WAL that reach it.
func (e *Env) restoreChain(ctx context.Context, id string, t pitr.Target, out io.Writer) ([]state.Backup, *archivedWAL, error) {
	if (id == "") == (t.Kind() == "") {
		return nil, nil, fmt.Errorf("restore a backup by its ID or to a point in time (-to-time, -to-lsn, -to-restore-point), one of them")
	}
	if t.Kind() != "" {
		return e.pointInTime(ctx, t, out)
	}
	chain, err := e.chain(ctx, id)
	return chain, nil, err
}

func (e *Env) restore(ctx context.Context, id string, t pitr.Target, dir string, out io.Writer) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("restore into %s: the directory is not empty; pgha does not overwrite data", dir)
	}
	lr, ok := e.Runtime.(*localRuntime)
	if !ok {
		return fmt.Errorf("restore -target-dir writes to this host: it runs on the local runtime; on docker, `pgha backup verify -restore` restores into a scratch container, and `pgha restore -node` over the primary")
	}
	chain, wal, err := e.restoreChain(ctx, id, t, out)
	if err != nil {
		return err
	}
	start := time.Now()
	recovery, err := restoreLocal(lr, e.Repo(), chain, wal, dir, out)
	if err != nil {
		return err
	}
	b := chain[len(chain)-1]
	// Only the recovery settings are added, after everything else
	// (postgresql.auto.conf is read last); the port and the rest stay the
	// operator's to set.
	if len(recovery) > 0 {
		conf, err := pgconf.Settings(recovery)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", b.ID, err)
		}
	}
	what := fmt.Sprintf("%s (a chain of %d)", b.ID, len(chain))
	if wal != nil {
		what = fmt.Sprintf("%s and the archived WAL to %s (recovery stops there, on timeline %d, and promotes)", b.ID, t, wal.choice.Timeline)
	}
	fmt.Fprintf(out, "Restored %s into %s in %s. Its pgha.conf still carries %s's settings: set port before starting it.\n",
		what, dir, time.Since(start).Round(time.Millisecond), b.Node)
	return nil
}

// chain is what restoring id needs, full first, as the catalog or the
// repository records it.
func (e *Env) chain(ctx context.Context, id string) ([]state.Backup, error) {
	list, _, err := e.Backups(ctx)
	if err != nil {
		return nil, err
	}
	return policy.Chain(list, id)
}

// expire lets a chain go, dependents first so that an interruption never
// leaves a dependent without its full: the catalog learns first, then the
// stored file goes and the manifest stays as a tombstone. Then the
// continuous archive's segments that end at or before walBefore ("":
// none) go, as far as no full still kept needs them.
func (e *Env) expire(ctx context.Context, ids []string, walBefore string) error {
	repo := e.Repo()
	all, err := backup.Repository(repo, e.Cfg.Name)
	if err != nil {
		return err
	}
	byID := map[string]state.Backup{}
	for _, b := range all {
		byID[b.ID] = b
	}
	for i := len(ids) - 1; i >= 0; i-- {
		b, ok := byID[ids[i]]
		if !ok || b.Status == "expired" {
			continue
		}
		gone := b
		gone.Status = "expired"
		if e.Catalog != nil {
			if err := e.Catalog.PutBackup(ctx, gone); err != nil {
				e.note("the catalog does not answer (%v); the next apply records the expiry", err)
			}
		}
		if _, err := backup.Expire(repo, b); err != nil {
			return err
		}
		e.note("expired %s %s (%s freed)", b.Type, b.ID, bytesize.Format(b.StoredBytes))
	}
	if walBefore == "" {
		return nil
	}
	before, err := state.ParseLSN(walBefore)
	if err != nil {
		return fmt.Errorf("expire the archive's WAL before %q: %w", walBefore, err)
	}
	n, err := backup.ExpireWAL(ctx, e.Repo(), e.Cfg.Name, before)
	if n > 0 {
		e.note("expired %d archived WAL segment(s) before %s", n, before)
	}
	return err
}

// recordBackup copies one backup's manifest into the catalog.
func (e *Env) recordBackup(ctx context.Context, id string) error {
	if e.Catalog == nil {
		return fmt.Errorf("cluster.hcl declares no catalog")
	}
	all, err := backup.Repository(e.Repo(), e.Cfg.Name)
	if err != nil {
		return err
	}
	have, err := e.Catalog.Backups(ctx)
	if err != nil {
		return err
	}
	known := map[string]state.Backup{}
	for _, r := range have {
		known[r.ID] = r
	}
	if id == "*" {
		for _, b := range all {
			if r, ok := known[b.ID]; ok && r.Status == b.Status && r.Checksum == b.Checksum {
				continue
			}
			if err := e.Catalog.PutBackup(ctx, keepVerify(b, known)); err != nil {
				return err
			}
			e.note("recorded %s %s (%s)", b.Type, b.ID, b.Status)
		}
		return nil
	}
	for _, b := range all {
		if b.ID == id {
			return e.Catalog.PutBackup(ctx, keepVerify(b, known))
		}
	}
	return fmt.Errorf("backup %s: the repository holds no manifest of it any more", id)
}

// keepVerify is manifest b with the last verify its catalog record
// carries, when that record is of the same stored file: the manifest
// holds no verify results, and a repair of the status must not erase them.
func keepVerify(b state.Backup, known map[string]state.Backup) state.Backup {
	if r, ok := known[b.ID]; ok && r.Checksum == b.Checksum {
		b.VerifiedAt, b.Verify, b.VerifyMode, b.VerifySeconds = r.VerifiedAt, r.Verify, r.VerifyMode, r.VerifySeconds
	}
	return b
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
