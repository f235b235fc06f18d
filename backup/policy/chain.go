package policy

import (
	"fmt"
	"slices"

	"github.com/pgha/pgha/state"
)

// Stored formats: how a backup's file is to be read back.
const (
	FormatBase = "base" // a tar base backup with the WAL that makes it consistent
	FormatWAL  = "wal"  // a tar of WAL segments, replayed onto the chain's full
	// FormatIncremental is a PostgreSQL 17 incremental base backup,
	// combined with its chain by pg_combinebackup.
	FormatIncremental = "incremental"
	// FormatLogical is a pg_dumpall SQL script.
	FormatLogical = "logical"
)

// Reference finds what an incremental or differential builds on, from
// the repository's backups: the newest full's chain. An incremental refers
// to the chain's newest backup; a differential to its full, and carries
// over (for the WAL method) the chain's backups after the full. Either
// reads the WAL from the newest backup's stop, where the backup slot
// stands.
func Reference(all []state.Backup, kind string) (ref state.Backup, carry []state.Backup, since state.LSN, err error) {
	last := Head(all) // the newest full's newest backup
	if last == nil {
		return ref, nil, 0, fmt.Errorf("no full backup to build a %s on: take a full one first (pgha backup -type full)", kind)
	}
	full := last
	if last.Type != "full" {
		chain, err := Chain(all, last.ID)
		if err != nil {
			return ref, nil, 0, err
		}
		full = &chain[0]
	}
	if full.Format != "" && full.Format != FormatBase {
		return ref, nil, 0, fmt.Errorf("the newest full %s is a %s backup: incrementals build on a base backup; take a physical full", full.ID, full.Format)
	}
	if since, err = state.ParseLSN(last.StopLSN); err != nil {
		return ref, nil, 0, fmt.Errorf("backup %s: %w", last.ID, err)
	}
	if kind == "incremental" {
		return *last, nil, since, nil
	}
	chain, err := Chain(all, last.ID)
	if err != nil {
		return ref, nil, 0, err
	}
	return *full, chain[1:], since, nil
}

// Chain returns what a restore of id needs, full first: the full, then
// each backup on the way to id by parent links. A differential's parent
// is its full, so its chain has two members whatever came between.
func Chain(all []state.Backup, id string) ([]state.Backup, error) {
	byID := map[string]state.Backup{}
	for _, b := range all {
		byID[b.ID] = b
	}
	var chain []state.Backup
	for cur := id; cur != ""; {
		b, ok := byID[cur]
		if !ok {
			if len(chain) == 0 {
				return nil, fmt.Errorf("no backup %s; `pgha backup list` shows them", id)
			}
			return nil, fmt.Errorf("backup %s needs %s, which is gone: it cannot be restored", id, cur)
		}
		if b.Status != "complete" {
			return nil, fmt.Errorf("backup %s needs %s, which is %s", id, b.ID, b.Status)
		}
		chain = append(chain, b)
		if len(chain) > 1000 {
			return nil, fmt.Errorf("backup %s: its parent links loop", id)
		}
		cur = b.Parent
	}
	slices.Reverse(chain)
	if chain[0].Type != "full" {
		return nil, fmt.Errorf("backup %s: its chain starts at %s, a %s, not a full", id, chain[0].ID, chain[0].Type)
	}
	return chain, nil
}
