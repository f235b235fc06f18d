package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/pitr"
	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/backup/walarchive"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// drillSlack is how far before the archive's end a drill's recovery may
// stop: a last record that runs on into the segment being received.
const drillSlack = 1 << 20

// DrillWait bounds how long a drill's scratch instance may take to replay
// the archive and promote.
const DrillWait = time.Hour

// Drill is a restore drill (`pgha backup drill`, and the watcher when the
// schedule's drill is due): the newest chain restored into a scratch
// instance, the WAL archive replayed after it to its end, then amcheck
// over every database. The result and how long it took are recorded on
// the chain's newest backup as a verify of mode "drill" (backup list,
// the API, the metrics), whatever the outcome; a drill cut short records
// nothing. Its lines go to r as Messages, and last the Outcome of
// "drill".
func (e *Env) Drill(ctx context.Context, r Reporter) (err error) {
	r = reporter(r)
	say := messages(r)
	defer func() {
		say.Flush()
		r.Report(report.Outcome{Operation: "drill", Err: err})
	}()
	return e.runDrill(ctx, say)
}

// runDrill is Drill, its lines to say (apply's backup.drill action).
func (e *Env) runDrill(ctx context.Context, say io.Writer) error {
	if e.Cfg.Backup == nil {
		return fmt.Errorf("cluster.hcl declares no backup block, so nothing to drill")
	}
	list, _, err := e.Backups(ctx)
	if err != nil {
		return err
	}
	head := policy.Head(list)
	if head == nil {
		return fmt.Errorf("no complete full backup to drill: take one (pgha backup -type full)")
	}
	chain, err := policy.Chain(list, head.ID)
	if err != nil {
		return err
	}
	start := time.Now()
	err = e.drill(ctx, chain, say)
	took := time.Since(start)
	if err == nil {
		fmt.Fprintf(say, "Drill of %s passed in %s.\n", head.ID, took.Round(time.Millisecond))
	}
	e.recordVerify(ctx, head.ID, state.VerifyDrill, took, err, say)
	return err
}

// drill restores chain (full first) and what the archive holds after it
// into a scratch instance, and checks it.
func (e *Env) drill(ctx context.Context, chain []state.Backup, out io.Writer) error {
	last := chain[len(chain)-1]
	repo := e.Repo()
	if l, err := backup.Layout(chain); err != nil || l == backup.LayoutLogical {
		if err == nil {
			err = fmt.Errorf("drill %s: a logical dump replays no WAL; `pgha backup verify -restore` loads it", last.ID)
		}
		return err
	}
	a, err := backup.ReadArchive(repo, e.Cfg.Name, "")
	if err != nil {
		return fmt.Errorf("drill %s: %w", last.ID, err)
	}
	var wal *archivedWAL
	if len(a.Segments) == 0 {
		fmt.Fprintf(out, "The WAL archive is empty: the drill restores %s to its own moment.\n", last.ID)
	} else {
		c, err := pitr.Latest(chain[0], a)
		if err != nil {
			return fmt.Errorf("drill %s: %w", last.ID, err)
		}
		wal = &archivedWAL{repo: repo, cluster: e.Cfg.Name, choice: c, segSize: a.SegSize}
		fmt.Fprintf(out, "Restoring %s (a chain of %d) and replaying %d archived WAL segments to %s on timeline %d...\n",
			last.ID, len(chain), len(c.Segments), c.End, c.Timeline)
	}
	rs, err := e.startRestored(ctx, chain, wal, DrillWait, true, out)
	if err != nil {
		return err
	}
	defer rs.Stop()
	ep := postgres.Endpoint{Host: rs.Host, Port: rs.Port, User: e.Cfg.Postgres.Superuser, Password: e.Cfg.Postgres.Password.Reveal()}
	if wal != nil {
		// Recovery ends, and promotes, at the first record it cannot read:
		// a damaged segment in the middle of the archive would end it
		// early without an error. The server writes from where replay
		// ended, which must be the archive's end (less the one record that
		// may run on into a segment not archived yet).
		n := &state.Node{}
		e.db().Observe(ctx, ep, n, nil)
		if !n.Reachable {
			return fmt.Errorf("drill %s: the scratch instance does not answer: %s", last.ID, n.Error)
		}
		if n.CurrentLSN+drillSlack < wal.choice.End {
			where := fmt.Sprintf("the segment after %s", n.CurrentLSN)
			for _, s := range wal.choice.Segments {
				if start, err := walarchive.SegmentStart(s.Name, wal.segSize); err == nil && uint64(n.CurrentLSN)/wal.segSize == start/wal.segSize {
					where = s.Key
				}
			}
			return fmt.Errorf("drill %s: recovery ended at %s, but the archive holds WAL to %s on timeline %d: %s cannot be read",
				last.ID, n.CurrentLSN, wal.choice.End, wal.choice.Timeline, where)
		}
		fmt.Fprintf(out, "Recovery replayed the archive to its end and promoted at %s (timeline %d).\n", n.CurrentLSN, n.Timeline)
	}
	n, err := postgres.AmCheck(ctx, ep)
	if err != nil {
		return fmt.Errorf("drill %s: %w", last.ID, err)
	}
	if n == 0 {
		return errors.New("amcheck checked nothing")
	}
	fmt.Fprintf(out, "amcheck: %d tables, TOAST tables and B-tree indexes are sound.\n", n)
	return nil
}
