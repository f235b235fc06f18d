package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgha/pgha/state"
)

// RestorePoint writes a named restore point into the primary's WAL and
// returns where it ends. A WAL-based backup stops there: recovery with
// recovery_target_name finds exactly that moment, and the record also
// guarantees WAL exists past every commit the backup must hold.
func RestorePoint(ctx context.Context, ep Endpoint, name string) (state.LSN, error) {
	conn, err := connect(ctx, ep)
	if err != nil {
		return 0, fmt.Errorf("restore point %s: %w", name, err)
	}
	defer closeConn(conn)
	var l string
	// txid_current gives the statement a commit record, whose synchronous
	// flush carries the restore point to disk: streaming can reach it now.
	var xid int64
	if err := conn.QueryRow(ctx, "SELECT pg_create_restore_point($1)::text, txid_current()", name).Scan(&l, &xid); err != nil {
		return 0, fmt.Errorf("restore point %s on %s: %w", name, ep, err)
	}
	return state.ParseLSN(l)
}

// AdvanceSlot moves a physical slot's restart point forward to lsn, so the
// server may recycle the WAL before it. It never moves a slot back.
func AdvanceSlot(ctx context.Context, ep Endpoint, slot string, lsn state.LSN) error {
	err := Exec(ctx, ep, `SELECT pg_replication_slot_advance($1, $2::pg_lsn)
  FROM pg_replication_slots WHERE slot_name = $1 AND restart_lsn < $2::pg_lsn`, slot, lsn.String())
	if err != nil {
		return fmt.Errorf("advance slot %s to %s: %w", slot, lsn, err)
	}
	return nil
}

// WALSegment is one WAL segment file as the server's pg_wal would hold it.
// The last segment of a stream is zero-padded past the stop point, as
// pg_receivewal pads its .partial files; recovery reads up to the last
// valid record.
type WALSegment struct {
	Name string
	Data []byte // the segment buffer, reused for the next segment after the sink returns
}

// ReceiveWAL streams the primary's WAL through a physical slot, from the
// start of the segment holding start (on timeline, 0 for the server's
// current one) up to at least stop, and hands each segment to sink in
// order. It reports nothing as flushed, so the slot does not move: the
// caller advances it once the WAL is stored durably. It returns the
// timeline streamed last.
//
// When start lies on a timeline the server has left (a switchover or a
// failover since), the stream follows the server's history as
// pg_receivewal does: the old timeline up to its switch point (its last
// segment zero-padded past it), then the history file of the next
// timeline (recovery reads it to follow the same way), then the next
// timeline from the start of the segment holding the switch point.
func ReceiveWAL(ctx context.Context, ep Endpoint, slot string, timeline int, start, stop state.LSN, sink func(WALSegment) error) (int, error) {
	conn, err := replConnect(ctx, ep)
	if err != nil {
		return 0, err
	}
	defer replClose(conn)
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("identify system %s: %w", ep, err)
	}
	segSize, err := walSegmentSize(ctx, conn)
	if err != nil {
		return 0, err
	}
	tl := sys.Timeline
	if timeline > 0 {
		tl = int32(timeline)
	}
	buf := make([]byte, segSize)
	for from := start; ; {
		next, err := receiveTimeline(ctx, conn, ep, slot, tl, from, stop, buf, sink)
		if err != nil || next == nil {
			return int(tl), err
		}
		h, err := pglogrepl.TimelineHistory(ctx, conn, next.Timeline)
		if err != nil {
			return 0, fmt.Errorf("history of timeline %d on %s: %w", next.Timeline, ep, err)
		}
		if err := sink(WALSegment{Name: h.FileName, Data: h.Content}); err != nil {
			return 0, err
		}
		tl, from = next.Timeline, state.LSN(next.LSN)
	}
}

// receiveTimeline streams one timeline from the segment holding from. It
// returns nil when stop was reached, or where the server's next timeline
// starts when this one ended first.
func receiveTimeline(ctx context.Context, conn *pgconn.PgConn, ep Endpoint, slot string, tl int32, from, stop state.LSN, buf []byte, sink func(WALSegment) error) (*pglogrepl.CopyDoneResult, error) {
	segSize := len(buf)
	segStart := from - from%state.LSN(segSize)
	if err := pglogrepl.StartReplication(ctx, conn, slot, pglogrepl.LSN(segStart), pglogrepl.StartReplicationOptions{Mode: pglogrepl.PhysicalReplication, Timeline: tl}); err != nil {
		return nil, fmt.Errorf("stream WAL from %s at %s on timeline %d through slot %s: %w", ep, segStart, tl, slot, err)
	}
	clear(buf)
	cur := segStart // the start of the segment in buf
	filled := state.LSN(0)
	emit := func() error {
		if err := sink(WALSegment{Name: SegmentName(tl, cur, segSize), Data: buf}); err != nil {
			return err
		}
		clear(buf)
		cur += state.LSN(segSize)
		filled = 0
		return nil
	}
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream WAL from %s: %w", ep, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			return nil, fmt.Errorf("stream WAL from %s: %w", ep, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			// The server left this timeline before stop: what arrived of
			// the segment holding the switch point is kept, padded.
			if filled > 0 {
				if err := emit(); err != nil {
					return nil, err
				}
			}
			next, err := pglogrepl.SendStandbyCopyDone(ctx, conn)
			if err != nil {
				return nil, fmt.Errorf("end of timeline %d on %s: %w", tl, ep, err)
			}
			if next == nil || next.Timeline <= tl {
				return nil, fmt.Errorf("timeline %d ended on %s before %s and the server named no next timeline", tl, ep, stop)
			}
			return next, nil
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return nil, err
				}
				if ka.ReplyRequested {
					// Zero positions: alive, nothing confirmed, the slot stays.
					if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{}); err != nil {
						return nil, err
					}
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return nil, err
				}
				pos, data := state.LSN(x.WALStart), x.WALData
				for len(data) > 0 {
					if pos < cur || pos >= cur+state.LSN(segSize) {
						return nil, fmt.Errorf("stream WAL from %s: data at %s outside segment %s", ep, pos, SegmentName(tl, cur, segSize))
					}
					off := int(pos - cur)
					n := copy(buf[off:], data)
					pos += state.LSN(n)
					data = data[n:]
					filled = pos - cur
					if int(filled) == segSize {
						if cur+state.LSN(segSize) >= stop {
							// stop lies inside this now-complete segment
							if err := emit(); err != nil {
								return nil, err
							}
							return nil, endCopy(ctx, conn)
						}
						if err := emit(); err != nil {
							return nil, err
						}
					}
				}
				if cur+filled >= stop && filled > 0 {
					if err := emit(); err != nil {
						return nil, err
					}
					return nil, endCopy(ctx, conn)
				}
			}
		}
	}
}

// replConnect opens a physical replication connection (the walsender
// protocol) as ep's user; the password stays on the parsed config.
func replConnect(ctx context.Context, ep Endpoint) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s sslmode=disable sslrootcert='' sslcert='' sslkey='' application_name=pgha-backup replication=true",
		quote(ep.Host), ep.Port, quote(ep.User)))
	if err != nil {
		return nil, err
	}
	cfg.Password = ep.Password
	if _, ok := ctx.Deadline(); !ok {
		cfg.ConnectTimeout = 5 * time.Second
	}
	// Backups move gigabytes: read the socket in large gulps, not in the
	// protocol reader's small default chunks (a third of the CPU went to
	// read system calls before).
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, 1<<20), w)
	}
	if ep.TLS == nil && ep.RequireTLS {
		return nil, &connectError{ep: ep, err: fmt.Errorf("TLS is required of %s and pgha has no TLS settings for it", ep.name())}
	}
	if ep.TLS != nil {
		cfg.TLSConfig = ep.TLS
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			return conn, nil
		}
		if err := plainAfter(ep, err); err != nil {
			return nil, err
		}
		cfg.TLSConfig = nil
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, &connectError{ep: ep, err: err}
	}
	return conn, nil
}

func replClose(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// endCopy leaves COPY BOTH mode; a server that already closed is fine,
// since every byte needed has arrived.
func endCopy(ctx context.Context, conn *pgconn.PgConn) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn.Frontend().Send(&pgproto3.CopyDone{})
	if err := conn.Frontend().Flush(); err != nil {
		return nil
	}
	for {
		msg, err := conn.ReceiveMessage(cctx)
		if err != nil {
			return nil
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			return nil
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("end WAL stream: %w", pgconn.ErrorResponseToPgError(m))
		}
	}
}

func walSegmentSize(ctx context.Context, conn *pgconn.PgConn) (int, error) {
	res, err := conn.Exec(ctx, "SHOW wal_segment_size").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("wal_segment_size: %w", err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		return 0, errors.New("wal_segment_size: no answer")
	}
	return parseSize(string(res[0].Rows[0][0]))
}

// parseSize reads PostgreSQL's size units ("16MB", "1GB").
func parseSize(s string) (int, error) {
	units := map[string]int{"kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
	for u, m := range units {
		if n, ok := strings.CutSuffix(s, u); ok {
			v, err := strconv.Atoi(n)
			return v * m, err
		}
	}
	return strconv.Atoi(s)
}

// SegmentName is the WAL file name of the segment holding lsn.
func SegmentName(timeline int32, lsn state.LSN, segSize int) string {
	perID := uint64(0x100000000) / uint64(segSize)
	no := uint64(lsn) / uint64(segSize)
	return fmt.Sprintf("%08X%08X%08X", timeline, no/perID, no%perID)
}
