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
func (e *Env) Lock(ctx context.Context, operation string, timeout time.Duration, out io.Writer) (Unlocker, error) {
	info := LockInfo(operation)
	if e.Catalog == nil {
		return fileLock(ctx, filepath.Join(e.Cfg.Dir, ".pgha-"+e.Cfg.Name+".lock"), info, timeout)
	}
	onWait := func(h *state.Lock) {
		if h != nil {
			fmt.Fprintf(out, "Acquiring the cluster lock (held by %s)...\n", h)
		} else {
			fmt.Fprintln(out, "Acquiring the cluster lock...")
		}
	}
	lease, err := e.Catalog.Acquire(ctx, info, timeout, onWait)
	if err != nil {
		return nil, fmt.Errorf("acquire the cluster lock: %w", err)
	}
	return lease, nil
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
	return state.Lock{ID: hex.EncodeToString(b[:]), Owner: owner, Host: host, PID: os.Getpid(),
		Operation: operation, Created: time.Now().UTC()}
}

// ForceUnlock removes a lock whose holder is gone.
func (e *Env) ForceUnlock(ctx context.Context, id string) error {
	if e.Catalog == nil {
		return ErrNoCatalog
	}
	return e.Catalog.ForceUnlock(ctx, id)
}

// noLock is used when no lock applies (destroying a cluster whose catalog
// is already gone).
type noLock struct{}

func (noLock) Release(context.Context) error { return nil }

// flock is the lock of a cluster without a catalog: an advisory lock on a
// file next to the cluster file, holding the holder's description. It
// serialises pgha runs on this machine only; a catalog is what shares a
// lock between machines.
type flock struct{ f *os.File }

func fileLock(ctx context.Context, path string, info state.Lock, timeout time.Duration) (Unlocker, error) {
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
				return nil, fmt.Errorf("the cluster lock %s is held by %s; wait for it to finish", path, strings.TrimSpace(string(holder)))
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

func (l flock) Release(context.Context) error {
	_ = l.f.Truncate(0)
	return l.f.Close() // closing the descriptor releases the flock
}
