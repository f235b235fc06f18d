package reconcile

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// TestBackupSource: which node each backup reads. A full streams from
// the primary, or from a standby that streams when the backup block says
// source = "standby"; a logical full is pg_dumpall of that same node.
// Incrementals and differentials always read the primary: its WAL
// through the backup slot before PostgreSQL 17, its changed blocks on 17.
func TestBackupSource(t *testing.T) {
	slot := config.BackupSlot
	cases := []struct {
		name    string
		block   string // the backup block's attributes
		version int
		setup   func(c *fakeCluster)
		takes   []string // backup types, taken in this order

		wantErr  string   // from the last take; "" = every take succeeds
		wantNode []string // the node each backup records
		// want: calls made in this order across the takes; never: calls
		// (prefixes) that must not happen
		want, never []string
	}{
		{name: "physical full from the primary", takes: []string{"full"}, wantNode: []string{"db1"},
			want:  []string{"pg.BaseBackup db1 as replicator incremental=false"},
			never: []string{"pg.BaseBackup db2", "pg.BaseBackup db3", "rt.DumpAll"}},
		{name: "physical full from a streaming standby", block: `source = "standby"`, takes: []string{"full"}, wantNode: []string{"db2"},
			want:  []string{"pg.BaseBackup db2 as replicator incremental=false"},
			never: []string{"pg.BaseBackup db1", "pg.BaseBackup db3"}},
		{name: "a standby that does not stream is passed over", block: `source = "standby"`, takes: []string{"full"}, wantNode: []string{"db3"},
			setup: func(c *fakeCluster) { c.nodes["db2"].diverged = true },
			want:  []string{"pg.BaseBackup db3 as replicator incremental=false"},
			never: []string{"pg.BaseBackup db1", "pg.BaseBackup db2"}},
		{name: "no standby streams: the primary", block: `source = "standby"`, takes: []string{"full"}, wantNode: []string{"db1"},
			setup: func(c *fakeCluster) {
				c.nodes["db2"].running = false
				c.nodes["db3"].diverged = true
			},
			want:  []string{"pg.BaseBackup db1 as replicator incremental=false"},
			never: []string{"pg.BaseBackup db2", "pg.BaseBackup db3"}},
		{name: "logical full from the primary", block: `method = "logical"`, takes: []string{"full"}, wantNode: []string{"db1"},
			want:  []string{"rt.DumpAll db1"},
			never: []string{"pg.BaseBackup", "pg.CreateSlot", "rt.DumpAll db2", "rt.DumpAll db3"}},
		{name: "logical full from a streaming standby", block: "method = \"logical\"\n    source = \"standby\"", takes: []string{"full"}, wantNode: []string{"db2"},
			want:  []string{"rt.DumpAll db2"},
			never: []string{"pg.BaseBackup", "rt.DumpAll db1"}},
		{name: "logical incremental refused before anything runs", block: `method = "logical"`, takes: []string{"incremental"},
			wantErr: "takes full backups only", never: []string{"rt.Observe", "pg.", "rt.DumpAll"}},
		{name: "PostgreSQL 14: pg_basebackup beside the standby", block: `source = "standby"`, version: 140011, takes: []string{"full"}, wantNode: []string{"db2"},
			want:  []string{"pg.BaseBackup db2 as replicator incremental=false", "rt.BaseBackup db2"},
			never: []string{"rt.BaseBackup db1", "pg.BaseBackup db1"}},
		{name: "PostgreSQL 16: full from the standby, WAL incremental from the primary", block: `source = "standby"`, takes: []string{"full", "incremental"},
			wantNode: []string{"db2", "db1"},
			want: []string{
				// The slot holds the WAL from before the full, on every node.
				"pg.CreateSlot db1 " + slot, "pg.CreateSlot db2 " + slot, "pg.CreateSlot db3 " + slot,
				"pg.BaseBackup db2 as replicator incremental=false",
				"pg.AdvanceSlot db1 " + slot,
				"pg.RestorePoint db1", "pg.ReceiveWAL db1 as replicator slot " + slot,
				"pg.AdvanceSlot db1 " + slot,
			},
			never: []string{"pg.BaseBackup db1", "pg.RestorePoint db2", "pg.ReceiveWAL db2", "pg.Setting"}},
		{name: "PostgreSQL 16: differential reads the primary's WAL", block: `source = "standby"`, takes: []string{"full", "differential"},
			wantNode: []string{"db2", "db1"},
			want:     []string{"pg.BaseBackup db2 as replicator incremental=false", "pg.RestorePoint db1", "pg.ReceiveWAL db1 as replicator slot " + slot},
			never:    []string{"pg.BaseBackup db1", "pg.ReceiveWAL db2", "pg.ReceiveWAL db3"}},
		{name: "PostgreSQL 17: summarize_wal on, full from the standby, block incremental from the primary", block: `source = "standby"`, version: 170002,
			takes: []string{"full", "incremental"}, wantNode: []string{"db2", "db1"},
			want: []string{
				// Every node summarizes, so that the chain continues on
				// whichever becomes primary.
				"pg.Exec db2 ALTER SYSTEM SET summarize_wal = on", "pg.Exec db3 ALTER SYSTEM SET summarize_wal = on",
				"pg.Exec db1 ALTER SYSTEM SET summarize_wal = on",
				"pg.BaseBackup db2 as replicator incremental=false",
				"pg.BaseBackup db1 as replicator incremental=true",
			},
			never: []string{"pg.CreateSlot", "pg.AdvanceSlot", "pg.RestorePoint", "pg.ReceiveWAL", "pg.BaseBackup db2 as replicator incremental=true"}},
		{name: "PostgreSQL 17: differential from the primary", version: 170002,
			takes: []string{"full", "differential"}, wantNode: []string{"db1", "db1"},
			want:  []string{"pg.BaseBackup db1 as replicator incremental=false", "pg.BaseBackup db1 as replicator incremental=true"},
			never: []string{"pg.RestorePoint", "pg.ReceiveWAL", "pg.BaseBackup db2", "pg.BaseBackup db3"}},
		{name: "no primary answers: nothing streamed", block: `source = "standby"`, takes: []string{"full"},
			setup:   func(c *fakeCluster) { c.nodes["db1"].running = false },
			wantErr: "no primary answers", never: []string{"pg.BaseBackup", "rt.BaseBackup", "pg.CreateSlot"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, c := fakeEnv(t, "db1", "  backup {\n    "+tc.block+"\n  }", nil)
			c.runAs("db1")
			for _, n := range c.nodes {
				if tc.version != 0 {
					n.version = tc.version
				}
				n.summarize = false
			}
			if tc.setup != nil {
				tc.setup(c)
			}
			clock := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
			e.Now = func() time.Time { return clock }
			ctx := context.Background()
			var got []string
			var err error
			for _, kind := range tc.takes {
				var bk state.Backup
				bk, err = e.Backup(ctx, kind, nil)
				if err != nil {
					break
				}
				if bk.Status != "complete" || bk.Type != kind {
					t.Errorf("%s backup: status %q, type %q", kind, bk.Status, bk.Type)
				}
				got = append(got, bk.Node)
				clock = clock.Add(24 * time.Hour)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("backup error: %v, want one saying %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("backup: %v", err)
			}
			if !slices.Equal(got, tc.wantNode) {
				t.Errorf("backups recorded as of %v, want %v", got, tc.wantNode)
			}
			// The calls in tc.want, in that order (others in between).
			i := 0
			for _, call := range c.calls {
				if i < len(tc.want) && strings.HasPrefix(call, tc.want[i]) {
					i++
				}
			}
			if i < len(tc.want) {
				t.Errorf("call %q not made (or not in order after %v)", tc.want[i], tc.want[:i])
			}
			for _, n := range tc.never {
				if c.called(n) {
					t.Errorf("%s was called", n)
				}
			}
			if tc.wantErr == "" {
				list, err := backup.Repository(e.Repo(), e.Cfg.Name)
				if err != nil || len(list) != len(tc.takes) {
					t.Errorf("the repository lists %d backups (%v), want %d", len(list), err, len(tc.takes))
				}
			}
		})
	}
}
