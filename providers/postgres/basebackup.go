package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgha/pgha/state"
)

// ErrOldServer means the server predates the BASE_BACKUP protocol pgha
// speaks (PostgreSQL 15); callers fall back to pg_basebackup.
var ErrOldServer = errors.New("the server is older than PostgreSQL 15")

// BaseBackupResult is where a base backup's WAL starts and ends.
type BaseBackupResult struct {
	Start, Stop state.LSN
	Timeline    int
}

// BaseBackup streams a base backup of the server at ep (a user with the
// REPLICATION attribute) over the replication protocol: the base tar, with
// the WAL that makes it consistent, to w as it arrives, and the server's
// backup_manifest to manifest. No client program runs and nothing is
// staged: the bytes go from the socket to pgha's compressor. It does not
// wait for WAL archiving: the WAL it needs travels in the stream. With parent
// (a previous backup's manifest, PostgreSQL 17 and summarize_wal on) the
// server sends an incremental backup relative to it.
//
// Tablespaces other than the default are refused, as Extract does.
func BaseBackup(ctx context.Context, ep Endpoint, label string, w, manifest io.Writer, parent []byte) (BaseBackupResult, error) {
	var res BaseBackupResult
	conn, err := replConnect(ctx, ep)
	if err != nil {
		return res, err
	}
	defer replClose(conn)
	major, _ := strconv.Atoi(strings.SplitN(conn.ParameterStatus("server_version"), ".", 2)[0])
	if major < 15 {
		return res, ErrOldServer
	}
	if parent != nil {
		if major < 17 {
			return res, fmt.Errorf("incremental base backups need PostgreSQL 17, %s runs %d", ep, major)
		}
		if _, err := conn.CopyFrom(ctx, bytes.NewReader(parent), "UPLOAD_MANIFEST"); err != nil {
			return res, fmt.Errorf("upload the parent manifest to %s: %w", ep, err)
		}
	}
	// WAL: true puts the WAL from the backup's start to its end in the
	// tar, so the backup is consistent without any archive. NoWait (WAIT
	// false) then keeps the server from waiting, at the end, for the
	// archiver to ship that WAL too: with a failing archive_command
	// BASE_BACKUP would otherwise wait as long as the archiver fails
	// (10 min 23 s were seen, silently), for files the backup already
	// holds. pg_basebackup does the same whenever it includes WAL (-X
	// fetch or stream). A failing archiver is the plan's warning instead.
	start, err := pglogrepl.StartBaseBackup(ctx, conn, pglogrepl.BaseBackupOptions{Label: label, Fast: true, WAL: true, NoWait: true,
		Manifest: true, Incremental: parent != nil})
	if err != nil {
		return res, fmt.Errorf("base backup of %s: %w", ep, err)
	}
	res.Start, res.Timeline = state.LSN(start.LSN), int(start.TimelineID)
	for _, ts := range start.Tablespaces {
		if ts.Location != "" {
			return res, fmt.Errorf("base backup of %s: tablespace %d at %s: tablespaces are not supported yet", ep, ts.OID, ts.Location)
		}
	}
	if err := pglogrepl.NextTableSpace(ctx, conn); err != nil {
		return res, fmt.Errorf("base backup of %s: %w", ep, err)
	}
	dst := w
copy:
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return res, fmt.Errorf("base backup of %s: %w", ep, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case 'n': // a new archive: its name and tablespace location
				name, _, _ := bytes.Cut(m.Data[1:], []byte{0})
				if string(name) != "base.tar" {
					return res, fmt.Errorf("base backup of %s: archive %q: tablespaces are not supported yet", ep, name)
				}
				dst = w
			case 'm': // the manifest follows
				dst = manifest
			case 'd':
				if dst == nil {
					continue
				}
				if _, err := dst.Write(m.Data[1:]); err != nil {
					return res, err
				}
			case 'p': // progress; pgha counts bytes itself
			}
		case *pgproto3.CopyDone:
			break copy
		case *pgproto3.ErrorResponse:
			return res, fmt.Errorf("base backup of %s: %w", ep, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.NoticeResponse:
		}
	}
	end, err := pglogrepl.FinishBaseBackup(ctx, conn)
	if err != nil {
		return res, fmt.Errorf("base backup of %s: %w", ep, err)
	}
	res.Stop = state.LSN(end.LSN)
	return res, nil
}
