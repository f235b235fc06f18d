package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestLocalHA(t *testing.T) {
	t.Parallel()
	haScenario(t, "local")
}

func TestDockerHA(t *testing.T) {
	t.Parallel()
	haScenario(t, "docker")
}

// writer inserts sequential ids into whichever node accepts writes and
// remembers every id whose commit was acknowledged.
type writer struct {
	c       *cluster
	mu      sync.Mutex
	acked   []int
	next    atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	lastErr atomic.Value
}

func startWriter(ctx context.Context, c *cluster) *writer {
	w := &writer{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		for {
			select {
			case <-w.stop:
				if conn != nil {
					conn.Close(context.Background())
				}
				return
			default:
			}
			if conn == nil {
				conn = w.connectPrimary(ctx)
				if conn == nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
			}
			id := int(w.next.Add(1))
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := conn.Exec(cctx, "INSERT INTO ha_writes VALUES ($1)", id)
			cancel()
			if err != nil {
				w.lastErr.Store(err.Error())
				conn.Close(context.Background())
				conn = nil
				continue
			}
			w.mu.Lock()
			w.acked = append(w.acked, id)
			w.mu.Unlock()
		}
	}()
	return w
}

// connectPrimary connects to the node that is not in recovery, if any.
func (w *writer) connectPrimary(ctx context.Context) *pgx.Conn {
	for _, name := range w.c.names {
		cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s connect_timeout=1", w.c.port(name), w.c.sslParams()))
		cfg.Password = superPW
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			continue
		}
		var rec bool
		if conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec) == nil && !rec {
			return conn
		}
		conn.Close(ctx)
	}
	return nil
}

func (w *writer) finish() []int {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.acked...)
}

// missing returns the acknowledged ids node does not have.
func missing(ctx context.Context, t *testing.T, c *cluster, node string, acked []int) []int {
	t.Helper()
	conn := c.conn(ctx, node)
	rows, err := conn.Query(ctx, "SELECT id FROM ha_writes")
	if err != nil {
		t.Fatal(err)
	}
	have := map[int]bool{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("read ha_writes on %s: %v", node, err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read ha_writes on %s: %v", node, err)
	}
	var out []int
	for _, id := range acked {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out
}

// haScenario: switchover under writes, failover after a hard kill, split
// brain, rejoin by rewind, rewind impossible, a lagging candidate, and the
// failback that ends in No changes. Shared by both runtimes.
func haScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 3)
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE ha_writes (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(c.file)
	declare := func(t *testing.T, primary string) {
		c.with(t).write(strings.Replace(string(good), `primary = "db1"`, `primary = "`+primary+`"`, 1))
	}

	t.Run("switchover under a writing client loses nothing", func(t *testing.T) {
		c := c.with(t)
		w := startWriter(ctx, c)
		time.Sleep(300 * time.Millisecond)
		declare(t, "db2")
		r := c.pgha("plan")
		if !strings.Contains(r.stdout, "~ switchover[db2]") || !strings.Contains(r.stdout, "standby.rejoin[db1]") {
			t.Fatalf("switchover plan:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		time.Sleep(300 * time.Millisecond)
		acked := w.finish()
		if c.primary(ctx) != "db2" {
			t.Fatal("db2 is not the primary")
		}
		if len(acked) < 10 {
			t.Fatalf("the writer committed only %d rows (last error %v)", len(acked), w.lastErr.Load())
		}
		if m := missing(ctx, t, c, "db2", acked); len(m) > 0 {
			t.Fatalf("%d acknowledged writes missing after the switchover: %v", len(m), m)
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	t.Run("failover after a hard kill; the third node follows", func(t *testing.T) {
		c := c.with(t)
		if _, err := c.conn(ctx, "db2").Exec(ctx, "INSERT INTO ha_writes VALUES (-100)"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if m := missing(ctx, t, c, "db1", []int{-100}); len(m) > 0 {
				return errors.New("not replicated yet")
			}
			return nil
		})
		c.kill("db2")
		r := c.pgha("failover", "-auto-approve")
		if r.code != 0 || !strings.Contains(r.stdout, "~ node.fence[db2]") || !strings.Contains(r.stdout, "~ failover[db") {
			t.Fatalf("failover:\n%s", r)
		}
		np := c.primary(ctx)
		if np != "db1" && np != "db3" {
			t.Fatalf("primary after failover: %q", np)
		}
		if m := missing(ctx, t, c, np, []int{-100}); len(m) > 0 {
			t.Fatal("a replicated row is missing on the new primary")
		}
		other := map[string]string{"db1": "db3", "db3": "db1"}[np]
		st := c.mustPgha("status").stdout
		if !strings.Contains(st, fmt.Sprintf("streaming from %s", c.peer(np))) {
			t.Fatalf("%s does not follow %s:\n%s", other, np, st)
		}
		r = c.pgha("plan")
		if !strings.Contains(r.stdout, "cluster.hcl declares db2 (the catalog recorded "+np+" as primary") || !strings.Contains(r.stdout, "standby.rejoin[db2]") ||
			!strings.Contains(r.stdout, "rewind: diverged at ") || !strings.Contains(r.stdout, "re-clone if rewind cannot work: ") {
			t.Fatalf("plan after failover does not explain it:\n%s", r)
		}
		// The choice is in the catalog's history, with its reasons.
		cat := c.catalog()
		defer cat.Close()
		events, err := cat.History(ctx, 10)
		var recorded, promoted, fenced bool
		for _, ev := range events {
			recorded = recorded || ev.Kind == "failover" && strings.Contains(ev.Message, "failover from db2 to "+np) && ev.Generation >= 2
			promoted = promoted || ev.Kind == "failover" && strings.Contains(ev.Message, "most advanced standby") && ev.Details["at_risk"] != ""
			fenced = fenced || ev.Kind == "node.fence" && ev.Details["node"] == "db2"
		}
		if err != nil || !recorded || !promoted || !fenced {
			t.Fatalf("catalog history after the failover lacks the choice and its reasons (recorded %v, promoted %v, fenced %v): %+v %v",
				recorded, promoted, fenced, events, err)
		}
		// Keep the new primary for the next steps.
		declare(t, np)
	})

	t.Run("split brain is fenced; the old primary's own rows are discarded by the rewind", func(t *testing.T) {
		c := c.with(t)
		np := c.primary(ctx)
		// Someone starts the fenced old primary by hand as a primary and writes
		// to it. (The killed postmaster may linger as a zombie where PID 1
		// reaps late, so its pid file goes too.)
		c.sh("db2", `rm -f $D/standby.signal $D/postmaster.pid; pg_ctl -D $D -l $D/../log/handstart.log -w start >/dev/null || { tail -5 $D/../log/handstart.log; exit 1; }`)
		conn := c.conn(ctx, "db2")
		if _, err := conn.Exec(ctx, "INSERT INTO ha_writes VALUES (-200)"); err != nil {
			t.Fatal(err)
		}
		r := c.pgha("plan")
		if !strings.Contains(r.stdout, "Critical: split brain") || !strings.Contains(r.stdout, "~ node.fence[db2]") ||
			!strings.Contains(r.stdout, "standby.rejoin[db2]") || !strings.Contains(r.stdout, "!! this discards data") {
			t.Fatalf("split brain plan:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if m := missing(ctx, t, c, "db2", []int{-200}); len(m) == 0 {
			t.Fatal("the row db2 wrote on its own survived the rejoin")
		}
		if got := c.primary(ctx); got != np {
			t.Fatalf("primary is %s, want %s", got, np)
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	t.Run("rewind impossible: re-cloned", func(t *testing.T) {
		c := c.with(t)
		np := c.primary(ctx)
		victim := map[string]string{"db1": "db3", "db3": "db1"}[np]
		// Replace the standby's data with an unrelated cluster, keeping
		// pgha's marker: a directory pgha made whose history no longer
		// matches (pgha never removes a directory without its marker).
		c.sh(victim, `m=$(cat $D/pgha.marker); pg_ctl -D $D -m fast -w stop >/dev/null; find $D -mindepth 1 -delete; initdb -D $D -A trust >/dev/null; printf '%s\n' "$m" > $D/pgha.marker`)
		r := c.pgha("plan")
		if !strings.Contains(r.stdout, "standby.rejoin["+victim+"]") {
			t.Fatalf("plan:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if m := missing(ctx, t, c, victim, []int{-100}); len(m) > 0 {
			t.Fatal("the re-cloned node lacks the cluster's rows")
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	t.Run("a lagging candidate is refused with the numbers", func(t *testing.T) {
		c := c.with(t)
		np := c.primary(ctx)
		laggard := map[string]string{"db1": "db3", "db3": "db1"}[np]
		// Cut the laggard off its primary, then write more than maximum_lag.
		lc := c.conn(ctx, laggard)
		if _, err := lc.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = ''"); err != nil {
			t.Fatal(err)
		}
		if _, err := lc.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		// Seen to be cut off on both ends before the writes that make it
		// lag: no WAL receiver on the laggard, no sender for it on the primary.
		pc := c.conn(ctx, np)
		eventually(t, 10*time.Second, func() error {
			var recv, send int
			if err := lc.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&recv); err != nil {
				return err
			}
			if err := pc.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1", laggard).Scan(&send); err != nil {
				return err
			}
			if recv != 0 || send != 0 {
				return fmt.Errorf("%s still streams (%d WAL receivers on it, %d senders for it on %s)", laggard, recv, send, np)
			}
			return nil
		})
		if _, err := pc.Exec(ctx, "INSERT INTO ha_writes SELECT g FROM generate_series(100000, 104000) g"); err != nil {
			t.Fatal(err)
		}
		// The third node has replayed every write before the kill, so that
		// the refusal below compares the laggard with a known position.
		var end string
		if err := pc.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
			t.Fatal(err)
		}
		third := c.conn(ctx, "db2")
		eventually(t, 10*time.Second, func() error {
			var caught bool
			if err := third.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", end).Scan(&caught); err != nil {
				return err
			}
			if !caught {
				return fmt.Errorf("db2 has not replayed %s yet", end)
			}
			return nil
		})
		c.kill(np)
		r := c.pgha("failover", "-auto-approve", "-to", laggard)
		if r.code == 0 || !strings.Contains(r.stderr, "refused: "+laggard+" is ") || !strings.Contains(r.stderr, "maximum_lag (64.0 KiB)") {
			t.Fatalf("a lagging candidate was not refused:\n%s", r)
		}
		if _, err := lc.Exec(ctx, "ALTER SYSTEM RESET primary_conninfo"); err != nil {
			t.Fatal(err)
		}
		if _, err := lc.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		// With the primary dead the laggard cannot catch up; -force promotes it anyway.
		r = c.pgha("failover", "-auto-approve", "-to", laggard, "-force")
		if r.code != 0 {
			t.Fatalf("forced failover:\n%s", r)
		}
		if got := c.primary(ctx); got != laggard {
			t.Fatalf("primary is %s", got)
		}
	})

	t.Run("failback to the declared primary ends in No changes", func(t *testing.T) {
		c := c.with(t)
		declare(t, "db1")
		r := c.pgha("failback", "-auto-approve")
		if r.code != 0 {
			t.Fatalf("failback:\n%s", r)
		}
		if got := c.primary(ctx); got != "db1" {
			t.Fatalf("primary after failback is %s", got)
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 || !strings.Contains(r.stdout, "No changes.") {
			t.Fatalf("not converged after failback:\n%s", r)
		}
	})
}
