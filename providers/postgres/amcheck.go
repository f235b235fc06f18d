package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
)

// AmCheck runs what pg_amcheck runs, through SQL so that it needs no
// client program where the server is (an official image has none of
// pgha's): in every database that takes connections, the amcheck
// extension (created if missing: AmCheck is for a scratch instance),
// verify_heapam on every table, materialized view and TOAST table, and
// bt_index_check with its heap check on every valid B-tree index. It
// returns how many relations it checked and an error naming the first
// corrupted ones.
func AmCheck(ctx context.Context, ep Endpoint) (int, error) {
	conn, err := connect(ctx, ep)
	if err != nil {
		return 0, err
	}
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	if err != nil {
		closeConn(conn)
		return 0, fmt.Errorf("amcheck: list the databases: %w", err)
	}
	var dbs []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			closeConn(conn)
			return 0, err
		}
		dbs = append(dbs, d)
	}
	rows.Close()
	closeConn(conn)
	checked := 0
	var bad []string
	for _, db := range dbs {
		dep := ep
		dep.Database = db
		n, found, err := amcheckDB(ctx, dep)
		if err != nil {
			return checked, fmt.Errorf("amcheck in database %s: %w", db, err)
		}
		checked += n
		bad = append(bad, found...)
	}
	if len(bad) > 0 {
		if len(bad) > 5 {
			bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
		}
		return checked, fmt.Errorf("amcheck found corruption in %s", strings.Join(bad, "; "))
	}
	return checked, nil
}

func amcheckDB(ctx context.Context, ep Endpoint) (int, []string, error) {
	conn, err := connect(ctx, ep)
	if err != nil {
		return 0, nil, err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS amcheck"); err != nil {
		return 0, nil, fmt.Errorf("create extension amcheck: %w", err)
	}
	var bad []string
	var heaps, indexes int
	rows, err := conn.Query(ctx, `SELECT c.oid::regclass::text, v.blkno, v.offnum, v.msg
  FROM pg_class c CROSS JOIN LATERAL verify_heapam(c.oid) v
 WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence <> 't'`)
	if err != nil {
		return 0, nil, fmt.Errorf("verify_heapam: %w", err)
	}
	for rows.Next() {
		var rel, msg string
		var blk int64
		var off *int32
		if err := rows.Scan(&rel, &blk, &off, &msg); err != nil {
			rows.Close()
			return 0, nil, err
		}
		bad = append(bad, fmt.Sprintf("%s.%s block %d: %s", ep.Database, rel, blk, msg))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("verify_heapam: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'm', 't') AND relpersistence <> 't'`).Scan(&heaps); err != nil {
		return 0, nil, err
	}
	irows, err := conn.Query(ctx, `SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'`)
	if err != nil {
		return 0, nil, err
	}
	var idx []string
	for irows.Next() {
		var name string
		if err := irows.Scan(&name); err != nil {
			irows.Close()
			return 0, nil, err
		}
		idx = append(idx, name)
	}
	irows.Close()
	for _, name := range idx {
		indexes++
		if _, err := conn.Exec(ctx, "SELECT bt_index_check($1::text::regclass, true)", name); err != nil {
			bad = append(bad, fmt.Sprintf("%s.%s: %v", ep.Database, name, err))
		}
	}
	return heaps + indexes, bad, nil
}

// TimelineHistories reads, over the replication protocol, the history
// files of every timeline from 2 to the server's current one that it
// holds (by number; a timeline not in its pg_wal is skipped). A restore
// over a node puts them beside the archive's, so that the restored server
// promotes to a timeline above every one the node has been on.
func TimelineHistories(ctx context.Context, ep Endpoint) (map[int][]byte, error) {
	conn, err := replConnect(ctx, ep)
	if err != nil {
		return nil, err
	}
	defer replClose(conn)
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("identify system %s: %w", ep, err)
	}
	out := map[int][]byte{}
	for t := int32(2); t <= sys.Timeline; t++ {
		h, err := pglogrepl.TimelineHistory(ctx, conn, t)
		if err != nil {
			continue
		}
		out[int(t)] = h.Content
	}
	return out, nil
}
