package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgha/pgha/state"
)

// WALSink receives an unbounded WAL stream (StreamWAL): the continuous
// archive. It decides what is durable; the stream reports only that to
// the server, so the slot keeps every byte the sink has not stored.
type WALSink interface {
	// Begin says the stream starts (again) on timeline at start, the
	// first byte of a segment of segSize bytes: after a connection, and
	// after each timeline switch.
	Begin(timeline int, start state.LSN, segSize int) error
	// Write hands the WAL at pos, in order, within one segment.
	Write(pos state.LSN, data []byte) error
	// EndTimeline says the current timeline ended at switchLSN (the server
	// is on a later one); every byte up to it has been written.
	EndTimeline(switchLSN state.LSN) error
	// History hands a timeline history file, before the timeline's WAL.
	History(name string, content []byte) error
	// Flush stores what it holds if it is due, and returns the position
	// up to which the WAL is durable (0: nothing yet). It is called after
	// every message and at least every tick when the server is quiet.
	Flush(now time.Time) (state.LSN, error)
}

// StreamTick is how often StreamWAL calls Flush when no WAL arrives.
const StreamTick = 100 * time.Millisecond

// StreamWAL streams the primary's WAL through a physical slot into sink,
// from the start of the segment holding start on timeline (0: the
// server's current timeline), until ctx ends or the connection fails. It
// follows timeline switches as they come (history files first) and
// reports the sink's durable position to the server as flushed, so the
// slot moves only past WAL the sink has stored.
//
// When timeline is one the server has left, the stream starts on it and
// the server ends it at its switch point; when start lies past that
// point (WAL received from an old primary that the new one never had),
// it starts at the switch point on the next timeline of the server's
// history instead: that WAL is not on the new history.
func StreamWAL(ctx context.Context, ep Endpoint, slot string, timeline int, start state.LSN, sink WALSink) error {
	conn, err := replConnect(ctx, ep)
	if err != nil {
		return err
	}
	defer replClose(conn)
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("identify system %s: %w", ep, err)
	}
	segSize, err := walSegmentSize(ctx, conn)
	if err != nil {
		return err
	}
	tl := sys.Timeline
	if timeline > 0 && int32(timeline) < sys.Timeline {
		// Store every history file from timeline on, and find where the
		// archive's timeline ended on the server's history.
		for t := int32(timeline) + 1; t <= sys.Timeline; t++ {
			h, err := pglogrepl.TimelineHistory(ctx, conn, t)
			if err != nil {
				return fmt.Errorf("history of timeline %d on %s: %w", t, ep, err)
			}
			if err := sink.History(h.FileName, h.Content); err != nil {
				return err
			}
		}
		h, err := pglogrepl.TimelineHistory(ctx, conn, sys.Timeline)
		if err != nil {
			return fmt.Errorf("history of timeline %d on %s: %w", sys.Timeline, ep, err)
		}
		tl, start = resumePoint(ParseHistory(string(h.Content)), int32(timeline), sys.Timeline, start)
	}
	for {
		next, err := streamTimeline(ctx, conn, ep, slot, tl, start, segSize, sink)
		if err != nil {
			return err
		}
		h, err := pglogrepl.TimelineHistory(ctx, conn, next.Timeline)
		if err != nil {
			return fmt.Errorf("history of timeline %d on %s: %w", next.Timeline, ep, err)
		}
		if err := sink.History(h.FileName, h.Content); err != nil {
			return err
		}
		tl, start = next.Timeline, state.LSN(next.LSN)
	}
}

// resumePoint is where to stream from after the archive stopped at pos on
// timeline tl, for a server on timeline cur with history hist: on tl
// itself while pos is before tl's switch point, else at the first switch
// point past which pos lies, on the timeline that followed it.
func resumePoint(hist []state.TimelineSwitch, tl, cur int32, pos state.LSN) (int32, state.LSN) {
	for i, sw := range hist {
		if int32(sw.Parent) < tl {
			continue
		}
		if pos < sw.SwitchLSN {
			return int32(sw.Parent), pos
		}
		next := cur
		if i+1 < len(hist) {
			next = int32(hist[i+1].Parent)
		}
		tl, pos = next, sw.SwitchLSN
	}
	return tl, pos
}

// streamTimeline streams timeline tl from the segment holding from, until
// the server ends the timeline (it returns where the next one starts) or
// an error.
func streamTimeline(ctx context.Context, conn *pgconn.PgConn, ep Endpoint, slot string, tl int32, from state.LSN, segSize int, sink WALSink) (*pglogrepl.CopyDoneResult, error) {
	segStart := from - from%state.LSN(segSize)
	if err := pglogrepl.StartReplication(ctx, conn, slot, pglogrepl.LSN(segStart), pglogrepl.StartReplicationOptions{Mode: pglogrepl.PhysicalReplication, Timeline: tl}); err != nil {
		return nil, fmt.Errorf("stream WAL from %s at %s on timeline %d through slot %s: %w", ep, segStart, tl, slot, err)
	}
	if err := sink.Begin(int(tl), segStart, segSize); err != nil {
		return nil, err
	}
	received, reported := segStart, state.LSN(0)
	report := func(force bool) error {
		durable, err := sink.Flush(time.Now())
		if err != nil {
			return err
		}
		if durable == reported && !force {
			return nil
		}
		reported = durable
		u := pglogrepl.StandbyStatusUpdate{}
		if durable > 0 {
			// Zero would be read as "the write position": nothing is
			// confirmed until something is durable.
			u = pglogrepl.StandbyStatusUpdate{WALWritePosition: pglogrepl.LSN(received), WALFlushPosition: pglogrepl.LSN(durable), WALApplyPosition: pglogrepl.LSN(durable)}
		}
		if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, u); err != nil {
			return fmt.Errorf("report WAL position to %s: %w", ep, err)
		}
		return nil
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, StreamTick)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				if err := report(false); err != nil {
					return nil, err
				}
				continue
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("stream WAL from %s: %w", ep, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			return nil, fmt.Errorf("stream WAL from %s: %w", ep, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			if err := sink.EndTimeline(received); err != nil {
				return nil, err
			}
			if err := report(true); err != nil {
				return nil, err
			}
			next, err := pglogrepl.SendStandbyCopyDone(ctx, conn)
			if err != nil {
				return nil, fmt.Errorf("end of timeline %d on %s: %w", tl, ep, err)
			}
			if next == nil || next.Timeline <= tl {
				return nil, errors.New("timeline ended on " + ep.String() + " and the server named no next timeline")
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
				if err := report(ka.ReplyRequested); err != nil {
					return nil, err
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return nil, err
				}
				pos, data := state.LSN(x.WALStart), x.WALData
				if pos != received {
					return nil, fmt.Errorf("stream WAL from %s: data at %s, expected %s", ep, pos, received)
				}
				for len(data) > 0 {
					// Split at segment boundaries: the sink gets one segment at a time.
					n := min(len(data), int(state.LSN(segSize)-pos%state.LSN(segSize)))
					if err := sink.Write(pos, data[:n]); err != nil {
						return nil, err
					}
					pos += state.LSN(n)
					data = data[n:]
				}
				received = pos
				if err := report(false); err != nil {
					return nil, err
				}
			}
		}
	}
}

// WALRemoved reports whether a stream failed because the server no longer
// holds the WAL asked for ("requested WAL segment ... has already been
// removed"): waiting does not bring it back.
func WALRemoved(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "58P01" || strings.Contains(pgErr.Message, "has already been removed"))
}
