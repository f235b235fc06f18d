package state

import (
	"errors"
	"fmt"
)

// ErrRecordMoved says that the cluster record was not written because it
// is no longer the one the writer read: its generation moved (a role
// change) or another write came between (its revision moved). Every store
// of the record (Redis, etcd) returns a *RecordMovedError that matches it.
var ErrRecordMoved = errors.New("the cluster record's generation moved")

// RecordMovedError names the generation a writer expected and the one
// stored (0 with Absent when there is no record), and the revisions
// (ClusterRecord.Revision) when only those differ. One type for every
// store, so that callers need not know which one answered.
type RecordMovedError struct {
	// Store names where the record lives, as the message says it: "the
	// catalog" (Redis), "etcd".
	Store                        string
	Expected, Stored             int64
	Absent                       bool
	ReadRevision, StoredRevision int64
}

func (e *RecordMovedError) Error() string {
	switch {
	case e.Absent:
		return fmt.Sprintf("%s holds no cluster record, generation %d was expected: it was deleted meanwhile", e.Store, e.Expected)
	case e.Expected == 0:
		return fmt.Sprintf("%s holds a cluster record at generation %d where none was expected: another pgha recorded the cluster meanwhile", e.Store, e.Stored)
	case e.Expected == e.Stored:
		return fmt.Sprintf("the cluster record (generation %d) was written since it was read (revision %d, now %d): another pgha changed it meanwhile", e.Stored, e.ReadRevision, e.StoredRevision)
	}
	return fmt.Sprintf("the cluster record is at generation %d, not %d as expected: another pgha changed the cluster meanwhile", e.Stored, e.Expected)
}

// Is makes errors.Is(err, ErrRecordMoved) true.
func (e *RecordMovedError) Is(target error) bool { return target == ErrRecordMoved }
