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
	if e.Catalog == nil {
		return noLock{}, nil
	}
	info := LockInfo(operation)
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

// noLock is used when no catalog is declared: a single operator's cluster
// with nothing to share a lock through.
type noLock struct{}

func (noLock) Release(context.Context) error { return nil }
