package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/state"
	"github.com/pgha/pgha/views"
)

// moment is what the data looked like when a backup was taken.
type moment struct {
	rows int
	sum  string
}

func snapshot(ctx context.Context, t *testing.T, q *pgx.Conn) moment {
	t.Helper()
	var m moment
	if err := q.QueryRow(ctx, "SELECT count(*), md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM wk").Scan(&m.rows, &m.sum); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLocalBackupWeek replays two weeks of the default schedule with a
// fixed clock, in-process, on PostgreSQL 15: each night at 02:05 rows are
// written and changed, and apply takes what the plan says is due. The
// catalog and the repository then hold the expected chain (full Monday,
// incremental Tue/Thu/Sat, differential Wed/Fri, nothing on Sunday), every
// backup restores to exactly the rows and content of its moment, and on
// the second Saturday retention expires the first week's chain as a whole.
func TestLocalBackupWeek(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n  }\n")
	env := c.env()
	monday := time.Date(2026, 11, 30, 2, 5, 0, 0, time.UTC)
	var clock time.Time
	env.Now = func() time.Time { return clock }
	ctx := context.Background()

	apply := func() *plan.Plan {
		t.Helper()
		var out bytes.Buffer
		p, err := env.Run(ctx, reconcile.RunOptions{Events: views.NewHuman(&out)})
		if err != nil {
			t.Fatalf("apply at %s: %v\n%s", clock.Format("Mon 15:04"), err, out.String())
		}
		return p
	}
	takes := func(p *plan.Plan) []plan.Action {
		var out []plan.Action
		for _, a := range p.Actions {
			if a.Kind == plan.BackupTake || a.Kind == plan.BackupExpire {
				out = append(out, a)
			}
		}
		return out
	}

	wantType := []string{"full", "incremental", "differential", "incremental", "differential", "incremental", ""}
	moments := map[string]moment{}
	var ids []string // week one, in order
	for day := 0; day < 7; day++ {
		clock = monday.AddDate(0, 0, day)
		if day > 0 { // the cluster exists after the first apply
			p := c.conn(ctx, "db1")
			if _, err := p.Exec(ctx, `INSERT INTO wk SELECT g, $1 || g FROM generate_series($2::int, $2::int + 999) g`, clock.Format("Mon"), day*1000); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Exec(ctx, `UPDATE wk SET v = v || '+' WHERE id % 97 = $1`, day); err != nil {
				t.Fatal(err)
			}
			moments["pending"] = snapshot(ctx, t, p)
			p.Close(ctx)
		}
		p := apply()
		acts := takes(p)
		if wantType[day] == "" {
			if len(acts) != 0 {
				t.Fatalf("%s: nothing is scheduled on Sunday, the plan says %+v", clock.Format("Mon"), acts)
			}
			continue
		}
		if len(acts) != 1 || acts[0].Kind != plan.BackupTake || acts[0].After["type"] != wantType[day] {
			t.Fatalf("%s: want one %s backup, the plan says %+v", clock.Format("Mon"), wantType[day], acts)
		}
		if day == 0 {
			// The first apply made the cluster; the full holds its first rows.
			p := c.conn(ctx, "db1")
			if _, err := p.Exec(ctx, `CREATE TABLE wk (id int PRIMARY KEY, v text)`); err != nil {
				t.Fatal(err)
			}
			p.Close(ctx)
		}
		list, _, err := env.Backups(ctx)
		if err != nil || len(list) == 0 {
			t.Fatalf("%s: no backup listed (%v)", clock.Format("Mon"), err)
		}
		b := list[0]
		if b.Type != wantType[day] || b.Status != "complete" {
			t.Fatalf("%s: newest backup %+v", clock.Format("Mon"), b)
		}
		ids = append(ids, b.ID)
		if day > 0 {
			moments[b.ID] = moments["pending"]
		}
	}

	// The catalog (by time) and the repository (by manifest) hold the chain.
	list, from, err := env.Backups(ctx)
	if err != nil || from != "catalog" {
		t.Fatalf("backups from %q: %v", from, err)
	}
	byID := map[string]state.Backup{}
	for _, b := range list {
		byID[b.ID] = b
	}
	wantParent := []int{-1, 0, 0, 2, 0, 4}
	for k, id := range ids {
		b := byID[id]
		if wantParent[k] >= 0 && b.Parent != ids[wantParent[k]] || b.Root != ids[0] {
			t.Errorf("%s: parent %q root %q, want parent %s", id, b.Parent, b.Root, ids[max(wantParent[k], 0)])
		}
		if _, err := os.Stat(filepath.Join(c.dir, "backups", "e2e", id, backup.ManifestName)); err != nil {
			t.Errorf("%s: no manifest on disk: %v", id, err)
		}
	}
	chain, err := env.Catalog.Chain(ctx, ids[0])
	if err != nil || !slices.Equal(chain, ids) {
		t.Errorf("catalog chain index of %s: %v (%v), want %v", ids[0], chain, err, ids)
	}

	// The full was taken before the table existed: it restores, without it.
	{
		var out bytes.Buffer
		rs, err := env.StartRestored(ctx, list[len(list)-1:], false, &out)
		if err != nil || list[len(list)-1].ID != ids[0] {
			t.Fatalf("restore the full %s: %v\n%s", ids[0], err, out.String())
		}
		q := c.connPort(ctx, rs.Port)
		var absent bool
		if err := q.QueryRow(ctx, "SELECT to_regclass('public.wk') IS NULL").Scan(&absent); err != nil || !absent {
			t.Errorf("the restored full has the table of later days (%v)", err)
		}
		q.Close(ctx)
		rs.Stop()
	}
	// Every later backup restores to exactly its moment.
	for _, id := range ids[1:] {
		ch, err := policy.Chain(list, id)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		rs, err := env.StartRestored(ctx, ch, false, &out)
		if err != nil {
			t.Fatalf("restore %s: %v\n%s", id, err, out.String())
		}
		q := c.connPort(ctx, rs.Port)
		got := snapshot(ctx, t, q)
		q.Close(ctx)
		rs.Stop()
		if got != moments[id] {
			t.Errorf("restore of %s (chain of %d) holds %+v, the moment of the backup had %+v", id, len(ch), got, moments[id])
		}
	}

	// Second week: Monday starts a new chain; on Friday the first week's
	// chain (newest backup Saturday 02:05) is six days old and goes
	// whole, after that day's backup.
	for day := 7; day < 13; day++ {
		clock = monday.AddDate(0, 0, day)
		acts := takes(apply())
		var expired []string
		for _, a := range acts {
			if a.Kind == plan.BackupExpire {
				expired = append(expired, strings.Split(a.Before["backups"], ",")...)
			}
		}
		if day < 11 && len(expired) > 0 {
			t.Fatalf("%s: expired %v too early", clock.Format("Mon 01-02"), expired)
		}
		if day == 11 {
			slices.Sort(expired)
			if !slices.Equal(expired, ids) {
				t.Fatalf("%s: expired %v, want the whole first chain %v", clock.Format("Mon 01-02"), expired, ids)
			}
		}
	}
	if list, _, err = env.Backups(ctx); err != nil {
		t.Fatal(err)
	}
	expiredSeen := 0
	for _, b := range list {
		wantStatus := "complete"
		if slices.Contains(ids, b.ID) {
			wantStatus = "expired"
			expiredSeen++
			if _, err := os.Stat(filepath.Join(c.dir, "backups", b.Path)); !os.IsNotExist(err) {
				t.Errorf("%s expired but its file is still there (%v)", b.ID, err)
			}
		}
		if b.Status != wantStatus {
			t.Errorf("%s is %s, want %s", b.ID, b.Status, wantStatus)
		}
	}
	if expiredSeen != len(ids) || len(list) <= len(ids) {
		t.Fatalf("the catalog lists %d backups, %d of the %d expired ones", len(list), expiredSeen, len(ids))
	}
}
