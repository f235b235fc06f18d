package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/state"
)

// Unlocker releases a held lock.
type Unlocker interface {
	Release(ctx context.Context) error
}

// ErrNoCatalog means the cluster file declares no catalog to lock in.
var ErrNoCatalog = errors.New("the cluster declares no catalog: there is nothing to lock or unlock")

// Lock takes the cluster lock in the catalog for operation, waiting up to
// timeout. After a quiet 400 ms it tells the user it is waiting and for whom,
// as Terraform does, so a short wait is silent and a long one is explained.
// A lock left by a pgha process on this host that is gone (SIGKILL, a
// crash) is taken over at once, and said: waiting out its lease would
// leave a half-done switchover without a primary for that long.
func (e *Env) Lock(ctx context.Context, operation string, timeout time.Duration, out io.Writer) (Lease, error) {
	info := LockInfo(operation)
	if e.store == nil {
		return fileLock(ctx, filepath.Join(e.Cfg.Dir, ".pgha-"+e.Cfg.Name+".lock"), info, timeout)
	}
	onWait := func(h *state.Lock) {
		if h != nil {
			fmt.Fprintf(out, "Acquiring the cluster lock (held by %s)...\n", h)
		} else {
			fmt.Fprintln(out, "Acquiring the cluster lock...")
		}
	}
	lease, err := e.store.Acquire(ctx, info, LockOptions{Timeout: timeout, OnWait: onWait, Gone: holderGone})
	if err != nil {
		return nil, fmt.Errorf("acquire the cluster lock: %w", err)
	}
	if h := lease.TookOver(); h != nil {
		fmt.Fprintf(out, "Took over the cluster lock of pid %d on %s, which is gone (lock ID %s, operation %q since %s).\n",
			h.PID, h.Host, h.ID, h.Operation, h.Created.UTC().Format(time.RFC3339))
	}
	return lease, nil
}

// holderGone says whether a lock holder is certainly dead: it ran on this
// host in this boot (same hostname and boot ID) and, in this pid
// namespace, its pid no longer runs the process that took the lock
// (absent, or started at another time: the pid was reused). A holder on another host,
// or one that left no boot ID and start time, is never declared gone here;
// its lease runs out instead.
func holderGone(h *state.Lock) bool {
	host, err := os.Hostname()
	if err != nil || h.Host != host || h.PID <= 0 || h.Boot == "" {
		return false
	}
	// Another boot ID may be this machine after a reboot, or another
	// machine with the same hostname (a cloned VM): only the lease's
	// expiry can tell, so it is left to run out.
	if boot := bootID(); boot == "" || boot != h.Boot {
		return false
	}
	// Its pid means something here only in the same pid namespace (a
	// container may share the host's name and kernel).
	if ns := pidNamespace(); ns == "" || h.PIDNamespace != ns {
		return false
	}
	if h.PID == os.Getpid() {
		return false // this very process (a second Env in one program)
	}
	start, ok := processStart(h.PID)
	return !ok || (h.Start != 0 && start != h.Start)
}

// pidNamespace names this process's pid namespace ("" when unknown).
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

// bootID is the kernel's ID of this boot ("" when unknown).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// processStart is a process's start time in clock ticks since boot (field
// 22 of /proc/PID/stat); ok is false when no such process exists.
func processStart(pid int) (uint64, bool) {
	st, err := proc.Read(pid)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// No /proc entry: the process is gone, unless /proc itself is
		// missing, in which case signal 0 decides (EPERM means it exists).
		if _, perr := os.Stat("/proc/self/stat"); perr == nil {
			return 0, false
		}
		err := syscall.Kill(pid, 0)
		return 0, err == nil || errors.Is(err, syscall.EPERM)
	case err != nil:
		return 0, true // there, but unreadable: counted alive
	case st.Exited():
		return 0, false // a zombie took no lock; it is gone
	}
	return st.StartTime, true
}

// LockInfo describes this process as a lock holder.
func LockInfo(operation string) state.Lock {
	host, _ := os.Hostname()
	owner := "unknown"
	if u, err := user.Current(); err == nil {
		owner = u.Username
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	start, _ := processStart(os.Getpid())
	return state.Lock{ID: hex.EncodeToString(b[:]), Owner: owner, Host: host, PID: os.Getpid(),
		Operation: operation, Created: time.Now().UTC(), Boot: bootID(), Start: start, PIDNamespace: pidNamespace()}
}

// ForceUnlock removes a lock whose holder is gone.
func (e *Env) ForceUnlock(ctx context.Context, id string) error {
	if e.store == nil {
		return ErrNoCatalog
	}
	return e.store.ForceUnlock(ctx, id)
}

// noLock is used when no lock applies (destroying a cluster whose catalog
// is already gone).
type noLock struct{}

func (noLock) Release(context.Context) error { return nil }
func (noLock) Lost() <-chan struct{}         { return nil }
func (noLock) Verify(context.Context) error  { return nil }
func (noLock) TookOver() *state.Lock         { return nil }

// flock is the lock of a cluster without a catalog: an advisory lock on a
// file next to the cluster file, holding the holder's description. It
// serialises pgha runs on this machine only; a catalog is what shares a
// lock between machines.
type flock struct{ f *os.File }

func fileLock(ctx context.Context, path string, info state.Lock, timeout time.Duration) (Lease, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || !time.Now().Before(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &HeldError{kind: ErrLockBusy,
					err: fmt.Errorf("the cluster lock %s is held by %s; wait for it to finish", path, strings.TrimSpace(string(holder)))}
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte((&info).String()+"\n"), 0)
	return flock{f: f}, nil
}

// Lost never fires: the kernel holds a flock for as long as the process.
func (flock) Lost() <-chan struct{}        { return nil }
func (flock) Verify(context.Context) error { return nil }
func (flock) TookOver() *state.Lock        { return nil }

func (l flock) Release(context.Context) error {
	_ = l.f.Truncate(0)
	return l.f.Close() // closing the descriptor releases the flock
}
