package local

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// shmemUnattached answers as PostgreSQL's check of an old pid file does:
// a segment some process still attaches means an orphaned backend may
// live on (wait); one attached by none, or removed, is stale.
func TestShmemUnattached(t *testing.T) {
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 56, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Fatalf("create a SysV segment: %v", err)
	}
	removed := false
	defer func() {
		if !removed {
			_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
	}()
	pidfile := fmt.Sprintf("4242\n/data\n1796109763\n5432\n\n127.0.0.1\n  9988202 %9d\nready   \n", id)
	mem, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if shmemUnattached(pidfile) {
		t.Error("a segment this process attaches counted as unattached")
	}
	if err := unix.SysvShmDetach(mem); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if !shmemUnattached(pidfile) {
		t.Error("a segment no process attaches counted as in use")
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		t.Fatalf("remove: %v", err)
	}
	removed = true
	if !shmemUnattached(pidfile) {
		t.Error("a removed segment counted as in use")
	}
	for _, bad := range []string{"4242\n", "4242\n/data\n1\n5432\n\n*\nnot a key\n", "4242\n/data\n1\n5432\n\n*\n  9988202 x\n"} {
		if shmemUnattached(bad) {
			t.Errorf("pid file %q without a readable segment counted as unattached", bad)
		}
	}
}
