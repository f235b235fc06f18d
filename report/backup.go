package report

import (
	"fmt"
	"time"

	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// BackupDone is a backup stored by `pgha backup`: the record its manifest
// holds and how long taking it took. It is reported once the repository
// holds the backup, before the catalog records it (a catalog that does
// not answer is a warning after it, and the backup stands). A failed
// backup has no BackupDone; its Outcome carries the error.
type BackupDone struct {
	Backup  state.Backup
	Elapsed time.Duration
}

func (BackupDone) event() {}

// Summary is the line people read when a backup is stored: how much was
// read and stored, the ratio, how long it took and the rate. The text
// view prints it, apply says it under its backup.take action, and the
// JSON view sends it as the event's @message, so all three agree.
func (d BackupDone) Summary() string {
	b := d.Backup
	return fmt.Sprintf("Backup %s complete: %s read, %s stored (%.0f%%) in %s, %s/s.", b.ID, bytesize.Format(b.DatabaseBytes), bytesize.Format(b.StoredBytes),
		100*float64(b.StoredBytes)/float64(max(b.DatabaseBytes, 1)), d.Elapsed.Round(time.Millisecond),
		bytesize.Format(int64(float64(b.DatabaseBytes)/max(d.Elapsed.Seconds(), 0.001))))
}
