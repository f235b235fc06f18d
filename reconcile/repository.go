package reconcile

import (
	"context"
	"errors"
	"io"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
)

// Repo opens the backup repository cluster.hcl declares: its directory,
// or its S3 bucket with the endpoint and keys of its s3 block. Every
// reader and writer of backups and of the WAL archive goes through it,
// so that none assumes a directory.
func (e *Env) Repo() backup.Store { return OpenRepo(e.Cfg.Backup) }

// OpenRepo opens bk's repository. A repository that cannot be opened
// (an unreadable ca_file) is a store whose every operation fails with
// why, so that the plan reports it where it reports an unreadable
// directory.
func OpenRepo(bk *config.Backup) backup.Store {
	if bk == nil {
		return brokenStore{errNoBackup}
	}
	var o *backup.S3Options
	if s := bk.S3; s != nil {
		o = &backup.S3Options{Endpoint: s.Endpoint, Region: s.Region, AccessKey: s.AccessKey.Reveal(),
			SecretKey: s.SecretKey.Reveal(), CAFile: s.CAFile, PartSize: uint64(s.PartSize)}
	}
	st, err := backup.OpenStore(bk.Repository, o)
	if err != nil {
		return brokenStore{err}
	}
	return st
}

var errNoBackup = errors.New("cluster.hcl declares no backup block")

type brokenStore struct{ err error }

func (b brokenStore) Put(context.Context, string, func(io.Writer) error) error { return b.err }
func (b brokenStore) Get(context.Context, string) (io.ReadCloser, error)       { return nil, b.err }
func (b brokenStore) List(context.Context, string) ([]string, error)           { return nil, b.err }
func (b brokenStore) Delete(context.Context, string) error                     { return b.err }
