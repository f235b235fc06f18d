package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgha/pgha/state"
)

// Checkpoint forces a checkpoint, so that a following clean shutdown is quick.
func Checkpoint(ctx context.Context, ep Endpoint) error {
	if err := Exec(ctx, ep, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint %s: %w", ep, err)
	}
	return nil
}

// Promote turns a standby into a primary and waits (up to 60 s) until it
// accepts writes. A server that is no longer in recovery is done: a
// promotion requested by an interrupted pgha finishes on its own.
func Promote(ctx context.Context, ep Endpoint) error {
	conn, err := connect(ctx, ep)
	if err != nil {
		return fmt.Errorf("promote %s: %w", ep, err)
	}
	defer conn.Close(context.Background())
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55000" { // recovery is not in progress
			return nil
		}
		return fmt.Errorf("promote %s: %w", ep, err)
	}
	if !ok {
		return fmt.Errorf("promote %s: the server did not finish promotion within 60s", ep)
	}
	return nil
}

// WALPositions returns a standby's received and replayed LSNs.
func WALPositions(ctx context.Context, ep Endpoint) (received, replayed state.LSN, err error) {
	conn, err := connect(ctx, ep)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	var rcv, rpl string
	err = conn.QueryRow(ctx, "SELECT COALESCE(pg_last_wal_receive_lsn()::text, ''), COALESCE(pg_last_wal_replay_lsn()::text, '')").Scan(&rcv, &rpl)
	if err != nil {
		return 0, 0, fmt.Errorf("WAL positions of %s: %w", ep, err)
	}
	return lsn(rcv), lsn(rpl), nil
}

// ResumeReplay resumes WAL replay if someone paused it: a paused standby
// would never catch up before promotion.
func ResumeReplay(ctx context.Context, ep Endpoint) error {
	return Exec(ctx, ep, "SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()")
}

// WaitReplayed waits until a standby has replayed at least target.
func WaitReplayed(ctx context.Context, ep Endpoint, target state.LSN) error {
	var last state.LSN
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		_, rpl, err := WALPositions(ctx, ep)
		if err != nil {
			return false, nil
		}
		last = rpl
		return rpl >= target, nil
	})
	if err != nil {
		return fmt.Errorf("%s replayed up to %s of %s: %w", ep, last, target, err)
	}
	return nil
}
