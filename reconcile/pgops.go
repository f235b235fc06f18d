package reconcile

import (
	"context"
	"io"

	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/state"
)

// pgOps is what the executors ask of a node's PostgreSQL server, through
// the endpoints e.superuser and e.replicator build (the endpoint's Name is
// the node's). Env reaches the servers through it rather than calling
// providers/postgres directly so that the executors' decisions — rejoin
// or re-clone, roll a switchover back, which node a backup reads — can be
// tested against a scripted fake; postgresOps is the real thing.
type pgOps interface {
	Observe(ctx context.Context, ep postgres.Endpoint, n *state.Node, roles map[string]string)
	Exec(ctx context.Context, ep postgres.Endpoint, sql string, args ...any) error
	Setting(ctx context.Context, ep postgres.Endpoint, name string) (string, error)
	Reload(ctx context.Context, ep postgres.Endpoint) error
	WaitReady(ctx context.Context, ep postgres.Endpoint) error
	WaitWritable(ctx context.Context, ep postgres.Endpoint) error
	WaitStreaming(ctx context.Context, ep postgres.Endpoint) error
	Checkpoint(ctx context.Context, ep postgres.Endpoint) error
	Promote(ctx context.Context, ep postgres.Endpoint) error
	ResumeReplay(ctx context.Context, ep postgres.Endpoint) error
	WaitReplayed(ctx context.Context, ep postgres.Endpoint, target state.LSN) error
	EnsureRole(ctx context.Context, ep postgres.Endpoint, name, password string) error
	CreateSlot(ctx context.Context, ep postgres.Endpoint, name string) error
	DropSlot(ctx context.Context, ep postgres.Endpoint, name string) error
	DropSlotEndingSender(ctx context.Context, ep postgres.Endpoint, name string) error
	AdvanceSlot(ctx context.Context, ep postgres.Endpoint, slot string, lsn state.LSN) error
	RestorePoint(ctx context.Context, ep postgres.Endpoint, name string) (state.LSN, error)
	ReceiveWAL(ctx context.Context, ep postgres.Endpoint, slot string, timeline int, start, stop state.LSN, sink func(postgres.WALSegment) error) (int, error)
	StreamWAL(ctx context.Context, ep postgres.Endpoint, slot string, timeline int, start state.LSN, sink postgres.WALSink) error
	BaseBackup(ctx context.Context, ep postgres.Endpoint, label string, w, manifest io.Writer, parent []byte) (postgres.BaseBackupResult, error)
}

// db is the PostgreSQL side Env acts through: the one Open chose, or the
// real one for an Env built by hand.
func (e *Env) db() pgOps {
	if e.pg != nil {
		return e.pg
	}
	return postgresOps{}
}

// postgresOps delegates every operation to providers/postgres.
type postgresOps struct{}

func (postgresOps) Observe(ctx context.Context, ep postgres.Endpoint, n *state.Node, roles map[string]string) {
	postgres.Observe(ctx, ep, n, roles)
}

func (postgresOps) Exec(ctx context.Context, ep postgres.Endpoint, sql string, args ...any) error {
	return postgres.Exec(ctx, ep, sql, args...)
}

func (postgresOps) Setting(ctx context.Context, ep postgres.Endpoint, name string) (string, error) {
	return postgres.Setting(ctx, ep, name)
}

func (postgresOps) Reload(ctx context.Context, ep postgres.Endpoint) error {
	return postgres.Reload(ctx, ep)
}

func (postgresOps) WaitReady(ctx context.Context, ep postgres.Endpoint) error {
	return postgres.WaitReady(ctx, ep)
}

func (postgresOps) WaitWritable(ctx context.Context, ep postgres.Endpoint) error {
	return postgres.WaitWritable(ctx, ep)
}

func (postgresOps) WaitStreaming(ctx context.Context, ep postgres.Endpoint) error {
	return postgres.WaitStreaming(ctx, ep)
}

func (postgresOps) Checkpoint(ctx context.Context, ep postgres.Endpoint) error {
	return postgres.Checkpoint(ctx, ep)
}

func (postgresOps) Promote(ctx context.Context, ep postgres.Endpoint) error {
	return postgres.Promote(ctx, ep)
}

func (postgresOps) ResumeReplay(ctx context.Context, ep postgres.Endpoint) error {
	return postgres.ResumeReplay(ctx, ep)
}

func (postgresOps) WaitReplayed(ctx context.Context, ep postgres.Endpoint, target state.LSN) error {
	return postgres.WaitReplayed(ctx, ep, target)
}

func (postgresOps) EnsureRole(ctx context.Context, ep postgres.Endpoint, name, password string) error {
	return postgres.EnsureRole(ctx, ep, name, password)
}

func (postgresOps) CreateSlot(ctx context.Context, ep postgres.Endpoint, name string) error {
	return postgres.CreateSlot(ctx, ep, name)
}

func (postgresOps) DropSlot(ctx context.Context, ep postgres.Endpoint, name string) error {
	return postgres.DropSlot(ctx, ep, name)
}

func (postgresOps) DropSlotEndingSender(ctx context.Context, ep postgres.Endpoint, name string) error {
	return postgres.DropSlotEndingSender(ctx, ep, name)
}

func (postgresOps) AdvanceSlot(ctx context.Context, ep postgres.Endpoint, slot string, lsn state.LSN) error {
	return postgres.AdvanceSlot(ctx, ep, slot, lsn)
}

func (postgresOps) RestorePoint(ctx context.Context, ep postgres.Endpoint, name string) (state.LSN, error) {
	return postgres.RestorePoint(ctx, ep, name)
}

func (postgresOps) ReceiveWAL(ctx context.Context, ep postgres.Endpoint, slot string, timeline int, start, stop state.LSN, sink func(postgres.WALSegment) error) (int, error) {
	return postgres.ReceiveWAL(ctx, ep, slot, timeline, start, stop, sink)
}

func (postgresOps) StreamWAL(ctx context.Context, ep postgres.Endpoint, slot string, timeline int, start state.LSN, sink postgres.WALSink) error {
	return postgres.StreamWAL(ctx, ep, slot, timeline, start, sink)
}

func (postgresOps) BaseBackup(ctx context.Context, ep postgres.Endpoint, label string, w, manifest io.Writer, parent []byte) (postgres.BaseBackupResult, error) {
	return postgres.BaseBackup(ctx, ep, label, w, manifest, parent)
}
