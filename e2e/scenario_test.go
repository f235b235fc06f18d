package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

func TestLocal(t *testing.T) {
	t.Parallel()
	scenario(t, "local")
}

func TestDocker(t *testing.T) {
	t.Parallel()
	scenario(t, "docker")
}

// scenario walks one three-node cluster through an operator's day on a
// runtime: apply from nothing, no changes, drift by hand, stale saved
// plans, locks, replication of a row, destroy. The steps share the cluster
// because building it is the slow part; each step leaves it converged.
// The same steps run on every runtime.
func scenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 3)
	ctx := context.Background()

	t.Run("invalid file touches nothing", func(t *testing.T) {
		c := c.with(t)
		good, _ := os.ReadFile(c.file)
		bad := strings.Replace(string(good), `primary = "db1"`, `primary = "db9"`, 1)
		if err := os.WriteFile(c.file, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		r := c.pgha("apply", "-auto-approve")
		os.WriteFile(c.file, good, 0o644)
		if r.code == 0 {
			t.Fatalf("apply accepted an invalid file:\n%s", r)
		}
		if !strings.Contains(r.stderr, "cluster.hcl:2:") || !strings.Contains(r.stderr, "db9") {
			t.Errorf("diagnostic lacks file:line or the bad name:\n%s", r.stderr)
		}
		if _, err := os.Stat(filepath.Join(c.dir, "data")); !os.IsNotExist(err) {
			t.Fatalf("apply on an invalid file touched the data directory: %v", err)
		}
		if left := c.leftovers(); len(left) > 0 {
			t.Fatalf("apply on an invalid file created %v", left)
		}
	})

	t.Run("apply from nothing", func(t *testing.T) {
		c := c.with(t)
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "primary.init[db1]") {
			t.Fatalf("plan of an empty cluster:\n%s", r)
		}
		r = c.mustPgha("apply", "-auto-approve")
		for _, want := range []string{"primary.init[db1]: done", "standby.clone[db3]: done", "Apply complete!"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("apply output lacks %q:\n%s", want, r.stdout)
			}
		}
		var checksums string
		if err := c.conn(ctx, "db1").QueryRow(ctx, "SHOW data_checksums").Scan(&checksums); err != nil || checksums != "on" {
			t.Fatalf("data_checksums = %q, %v", checksums, err)
		}
	})

	t.Run("second plan says no changes", func(t *testing.T) {
		c := c.with(t)
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 0 || !strings.Contains(r.stdout, "No changes.") {
			t.Fatalf("plan after apply:\n%s", r)
		}
	})

	t.Run("status json", func(t *testing.T) {
		c := c.with(t)
		var st struct {
			Cluster string `json:"cluster"`
			Nodes   []struct {
				Name, Role, Host, DataDir, LSN string
				Running                        bool
				Port, Timeline                 int
				LagBytes                       *int64 `json:"lag_bytes"`
				Streaming                      bool
				DataDirJSON                    string `json:"data_dir"`
				LSNJSON                        string `json:"lsn"`
			} `json:"nodes"`
		}
		r := c.mustPgha("status", "-json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status -json: %v\n%s", err, r.stdout)
		}
		if st.Cluster != c.name || len(st.Nodes) != 3 {
			t.Fatalf("status: %s", r.stdout)
		}
		for i, n := range st.Nodes {
			wantRole := "standby"
			if i == 0 {
				wantRole = "primary"
			}
			if n.Role != wantRole || !n.Running || n.Port != c.ports[i] || n.Host != "127.0.0.1" || n.Timeline != 1 ||
				n.LSNJSON == "" || n.LagBytes == nil || n.DataDirJSON != c.dataDir(n.Name) {
				t.Errorf("node %d: %+v", i, n)
			}
			if i > 0 && !n.Streaming {
				t.Errorf("%s is not streaming", n.Name)
			}
		}
		table := c.mustPgha("status").stdout
		if !strings.Contains(table, "streaming from ") {
			t.Errorf("status table:\n%s", table)
		}
	})

	t.Run("row written on primary is read on both standbys", func(t *testing.T) {
		c := c.with(t)
		p := c.conn(ctx, "db1")
		if _, err := p.Exec(ctx, "CREATE TABLE IF NOT EXISTS e2e (id int primary key, note text); INSERT INTO e2e VALUES (1, 'replicated')"); err != nil {
			t.Fatal(err)
		}
		for _, node := range []string{"db2", "db3"} {
			s := c.conn(ctx, node)
			eventually(t, 10*time.Second, func() error {
				var note string
				if err := s.QueryRow(ctx, "SELECT note FROM e2e WHERE id = 1").Scan(&note); err != nil {
					return fmt.Errorf("%s: %w", node, err)
				}
				if note != "replicated" {
					return fmt.Errorf("%s: note %q", node, note)
				}
				return nil
			})
		}
	})

	t.Run("stopped standby is planned and fixed", func(t *testing.T) {
		c := c.with(t)
		c.pgctl("db2", "-m", "fast", "stop")
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "~ node.start[db2]") || !strings.Contains(r.stdout, "standby db2 is not running") {
			t.Fatalf("plan after stopping db2:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged after apply:\n%s", r)
		}
	})

	t.Run("parameter changes reload or restart", func(t *testing.T) {
		c := c.with(t)
		good, _ := os.ReadFile(c.file)
		defer os.WriteFile(c.file, good, 0o644)
		edit := strings.Replace(string(good), `shared_buffers = "32MB"`, `shared_buffers = "48MB", work_mem = "6MB"`, 1)
		if err := os.WriteFile(c.file, []byte(edit), 0o644); err != nil {
			t.Fatal(err)
		}
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || strings.Count(r.stdout, "~ settings.update[") != 3 || !strings.Contains(r.stdout, `~ shared_buffers = "32MB" -> "48MB"`) ||
			!strings.Contains(r.stdout, "apply by restart (shared_buffers needs one)") {
			t.Fatalf("plan after editing parameters:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged after a restart:\n%s", r)
		}
		var sb, wm string
		conn := c.conn(ctx, "db3")
		if err := conn.QueryRow(ctx, "SELECT current_setting('shared_buffers'), current_setting('work_mem')").Scan(&sb, &wm); err != nil || sb != "48MB" || wm != "6MB" {
			t.Fatalf("db3 runs with shared_buffers=%s work_mem=%s (%v)", sb, wm, err)
		}
		// A reload-only change does not restart.
		edit2 := strings.Replace(edit, `work_mem = "6MB"`, `work_mem = "7MB"`, 1)
		if err := os.WriteFile(c.file, []byte(edit2), 0o644); err != nil {
			t.Fatal(err)
		}
		r = c.pgha("plan")
		if !strings.Contains(r.stdout, "apply by reload") || strings.Contains(r.stdout, "restart") {
			t.Fatalf("work_mem change:\n%s", r)
		}
		var before, after time.Time
		if err := conn.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&before); err != nil {
			t.Fatal(err)
		}
		c.mustPgha("apply", "-auto-approve")
		conn2 := c.conn(ctx, "db3")
		if err := conn2.QueryRow(ctx, "SELECT pg_postmaster_start_time(), current_setting('work_mem')").Scan(&after, &wm); err != nil {
			t.Fatal(err)
		}
		if before.IsZero() || !before.Equal(after) {
			t.Fatalf("a reload-only change restarted the server: started %v, now %v", before, after)
		}
		if wm != "7MB" {
			t.Fatalf("db3 runs with work_mem=%s after the reload, want 7MB", wm)
		}
		os.WriteFile(c.file, good, 0o644)
		c.mustPgha("apply", "-auto-approve")
	})

	t.Run("orphaned slot is shown and dropped", func(t *testing.T) {
		c := c.with(t)
		p := c.conn(ctx, "db1")
		if _, err := p.Exec(ctx, "SELECT pg_create_physical_replication_slot('forgotten_backup', true)"); err != nil {
			t.Fatal(err)
		}
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "- slot.drop[db1/forgotten_backup]") || !strings.Contains(r.stdout, "declared by no node") ||
			!strings.Contains(r.stdout, "0 to add, 0 to change, 1 to destroy") {
			t.Fatalf("plan with an orphaned slot:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		n := -1
		if err := p.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'forgotten_backup'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("slot not dropped: %d left", n)
		}
	})

	t.Run("apply asks and no means nothing happens", func(t *testing.T) {
		c := c.with(t)
		c.pgctl("db3", "-m", "fast", "stop")
		r := c.pghaInput("no\n", "apply")
		if r.code != 1 || !strings.Contains(r.stdout, "Only 'yes' will be accepted") || !strings.Contains(r.stderr, "Apply cancelled") {
			t.Fatalf("declined apply:\n%s", r)
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 2 {
			t.Fatalf("a declined apply changed something:\n%s", r)
		}
		r = c.pghaInput("yes\n", "apply")
		if r.code != 0 || !strings.Contains(r.stdout, "node.start[db3]: done") {
			t.Fatalf("approved apply:\n%s", r)
		}
	})

	// Injecting a failure by taking a node's port only works on the local
	// runtime: a container's port is published by the engine.
	if rt == "local" {
		t.Run("failed step is reported and the next plan shows what is left", func(t *testing.T) {
			c := c.with(t)
			c.pgctl("db2", "-m", "fast", "stop")
			c.pgctl("db3", "-m", "fast", "stop")
			// Something else takes db2's port, so db2 cannot start.
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.ports[1]))
			if err != nil {
				t.Fatal(err)
			}
			r := c.pgha("apply", "-auto-approve")
			l.Close()
			if r.code != 1 || !strings.Contains(r.stderr, "failed:        1 (node.start[db2])") ||
				!strings.Contains(r.stderr, "not attempted: 1 (node.start[db3])") || !strings.Contains(r.stderr, "Address already in use") {
				t.Fatalf("failed apply:\n%s", r)
			}
			r = c.pgha("plan", "-detailed-exitcode")
			if r.code != 2 || !strings.Contains(r.stdout, "node.start[db2]") || !strings.Contains(r.stdout, "node.start[db3]") {
				t.Fatalf("plan after a failed apply:\n%s", r)
			}
			c.mustPgha("apply", "-auto-approve")
			if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
				t.Fatalf("not converged:\n%s", r)
			}
		})
	}

	t.Run("saved plan refused after drift", func(t *testing.T) {
		c := c.with(t)
		c.pgctl("db3", "-m", "fast", "stop")
		planFile := filepath.Join(c.dir, "db3.plan")
		c.mustPgha("plan", "-out", planFile)
		c.pgctl("db2", "-m", "fast", "stop")
		r := c.pgha("apply", planFile)
		if r.code == 0 || !strings.Contains(r.stderr, "stale") || !strings.Contains(r.stderr, `node.db2.running: "true" → "false"`) {
			t.Fatalf("stale plan was not refused with what moved:\n%s", r)
		}
		if strings.Contains(r.stdout, "done in") {
			t.Fatalf("a stale plan executed actions:\n%s", r)
		}
		// A fresh saved plan applies without a prompt.
		c.mustPgha("plan", "-out", planFile)
		// As a reviewer reads it in a pull request (show reads only the file).
		md, err := exec.Command(pghaBin, "show", "-markdown", planFile).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(md), "### pgha apply plan for cluster ") || !strings.Contains(string(md), "\n**Plan: ") ||
			!strings.Contains(string(md), "\n!   node.start[db2]\n") || !strings.Contains(string(md), "\n!   node.start[db3]\n") ||
			!strings.HasSuffix(string(md), "```\n\n</details>\n") {
			t.Fatalf("show -markdown of the saved plan: %v\n%s", err, md)
		}
		c.noSecret("show -markdown", string(md))
		r = c.mustPgha("apply", planFile)
		if !strings.Contains(r.stdout, "node.start[db2]: done") || !strings.Contains(r.stdout, "node.start[db3]: done") {
			t.Fatalf("saved plan output:\n%s", r)
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	t.Run("lock held by someone else", func(t *testing.T) {
		c := c.with(t)
		cat := c.catalog()
		defer cat.Close()
		holder := state.Lock{ID: "e2e-holder-1", Owner: "alice", Host: "ops-host", PID: 4242, Operation: "apply", Created: time.Now()}
		lease, err := cat.Acquire(ctx, holder, redis.AcquireOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(ctx)
		c.pgctl("db3", "-m", "fast", "stop")
		r := c.pgha("apply", "-auto-approve", "-lock-timeout", "500ms")
		if r.code == 0 {
			t.Fatalf("apply ran under someone else's lock:\n%s", r)
		}
		for _, want := range []string{"e2e-holder-1", "alice@ops-host", "4242", "force-unlock"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("lock error lacks %q:\n%s", want, r.stderr)
			}
		}
		if r := c.pgha("force-unlock", "wrong-id"); r.code == 0 {
			t.Fatalf("force-unlock with a wrong ID succeeded:\n%s", r)
		}
		c.mustPgha("force-unlock", "e2e-holder-1")
		c.mustPgha("apply", "-auto-approve")
	})

	t.Run("two applies at once", func(t *testing.T) {
		c := c.with(t)
		c.pgctl("db2", "-m", "fast", "stop")
		c.pgctl("db3", "-m", "fast", "stop")
		var wg sync.WaitGroup
		results := make([]result, 2)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = c.pgha("apply", "-auto-approve")
			}()
		}
		wg.Wait()
		var ok, locked int
		for _, r := range results {
			switch {
			case r.code == 0:
				ok++
			case strings.Contains(r.stderr, "the cluster lock is held by") && strings.Contains(r.stderr, "operation \"apply\""):
				locked++
			default:
				t.Errorf("unexpected result:\n%s", r)
			}
		}
		if ok != 1 || locked != 1 {
			t.Fatalf("want one apply to run and one to report the lock; got %d ran, %d locked:\n%s\n%s", ok, locked, results[0], results[1])
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	if rt == "docker" {
		t.Run("destroy keeps volumes unless told", func(t *testing.T) {
			c := c.with(t)
			r := c.mustPgha("destroy", "-auto-approve")
			if !strings.Contains(r.stdout, "its volume (the data) is kept") || strings.Contains(r.stdout, "DISCARD") {
				t.Fatalf("destroy output:\n%s", r)
			}
			if r := c.pgha("plan", "-destroy", "-detailed-exitcode"); r.code != 0 {
				t.Fatalf("destroy did not finish:\n%s", r)
			}
			// The data comes back with the containers.
			c.mustPgha("apply", "-auto-approve")
			var note string
			if err := c.conn(ctx, "db3").QueryRow(ctx, "SELECT note FROM e2e WHERE id = 1").Scan(&note); err != nil || note != "replicated" {
				t.Fatalf("data lost across destroy and apply: %q %v", note, err)
			}
		})
	}

	if rt == "local" {
		t.Run("data directories carry pgha's marker", func(t *testing.T) {
			c := c.with(t)
			for _, n := range []string{"db1", "db2", "db3"} {
				b, err := os.ReadFile(filepath.Join(c.dataDir(n), "pgha.marker"))
				if err != nil {
					t.Fatal(err)
				}
				if want := "cluster = " + c.name + "\nnode = " + n + "\n"; !strings.HasSuffix(string(b), want) {
					t.Errorf("%s's marker:\n%s\nwant it to end with:\n%s", n, b, want)
				}
			}
		})
	}

	t.Run("destroy", func(t *testing.T) {
		c := c.with(t)
		r := c.mustPgha("destroy", "-auto-approve", "-delete-volumes")
		if !strings.Contains(r.stdout, "node.destroy[db1]") {
			t.Fatalf("destroy output:\n%s", r)
		}
		if left := c.leftovers(); len(left) > 0 {
			t.Errorf("destroy left %v", left)
		}
		if r := c.pgha("plan", "-destroy", "-delete-volumes", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("destroy did not finish:\n%s", r)
		}
	})
}
