package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgha/pgha/config"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
)

// ErrLockLost is the cause of an apply stopped because its lease ended
// under it: another pgha may act now, so this one must not.
var ErrLockLost = errors.New("the cluster lock was lost (the catalog did not answer for a whole lease, or someone ran force-unlock): stopped so as not to act without it")

// StalePlanError refuses a saved plan the cluster or the file moved away from.
type StalePlanError struct {
	ConfigChanged bool
	Moved         []string
}

func (e *StalePlanError) Error() string {
	var b strings.Builder
	b.WriteString("the saved plan is stale")
	if e.ConfigChanged {
		b.WriteString("; the cluster file changed since it was made")
	}
	if len(e.Moved) > 0 {
		b.WriteString("; the cluster changed since it was made:\n")
		for _, m := range e.Moved {
			b.WriteString("  " + m + "\n")
		}
	} else {
		b.WriteString("\n")
	}
	b.WriteString("Make a new plan with `pgha plan -out FILE` and review it.")
	return b.String()
}

// PlanOptions say which plan to make.
type PlanOptions struct {
	// Operation is "apply" (the default), "destroy", "failover" or
	// "failback".
	Operation string
	Destroy   plan.DestroyOptions
	Failover  plan.FailoverOptions
	Build     plan.Options // apply and failback
	// Observe tunes the observation the plan is made from. The watcher's
	// restart in place and failover observe Quick and NoAside: what they
	// plan (a node.start, a promotion) needs no set-aside directory
	// listed, and on Docker a probe container for a stopped node's volume
	// cost 0.9-1.9 s before the first write could be taken again.
	Observe ObserveOptions
}

// Plan observes the cluster and makes the plan of o.Operation. It is the
// one place that chooses the builder, for every caller: `pgha plan`, Run
// (apply, destroy, failover, failback), and whatever plans next. A
// failover plan is made once the standbys' replay has come to rest, so
// that the most advanced one is chosen on settled positions.
func (e *Env) Plan(ctx context.Context, o PlanOptions) (*plan.Plan, error) {
	s := e.ObserveWith(ctx, o.Observe)
	switch o.Operation {
	case "destroy":
		return plan.BuildDestroy(e.Cfg, s, o.Destroy)
	case "failover":
		return plan.BuildFailover(e.Cfg, e.settle(ctx, s), o.Failover)
	case "", "apply", "failback":
		return plan.BuildWith(e.Cfg, s, o.Build), nil
	}
	return nil, fmt.Errorf("pgha cannot plan a %q operation", o.Operation)
}

// RunOptions steer one apply, destroy, failover or failback.
type RunOptions struct {
	PlanOptions
	Saved       *plan.Plan // a saved plan to apply instead of planning now
	LockTimeout time.Duration
	// Approve is asked after the plan is shown; nil means auto-approve.
	Approve func(p *plan.Plan) (bool, error)
	// Events receives what the run reports, its Outcome last; nil drops it.
	Events Reporter
	// Filter, when set, keeps the part of the plan made under the lock
	// that may run (the watcher's policy, plan.Filter); what it returns
	// is what is shown and executed. Saved plans are not filtered.
	Filter func(*plan.Plan) *plan.Plan
}

// Run is `pgha apply`, `destroy`, `failover` and `failback`: lock,
// observe, plan, show, ask, execute, unlock. The plan is made under the
// lock so that what is shown is what runs. Whatever happens, the last
// event reported is the Outcome, which carries the error Run returns.
func (e *Env) Run(ctx context.Context, o RunOptions) (p *plan.Plan, err error) {
	if o.Operation == "" {
		o.Operation = "apply"
	}
	r := reporter(o.Events)
	defer func() { r.Report(report.Outcome{Operation: o.Operation, Plan: p, Err: err}) }()
	return e.run(ctx, o, r)
}

func (e *Env) run(ctx context.Context, o RunOptions, r Reporter) (*plan.Plan, error) {
	var lock Lease = noLock{}
	if e.lockable(o.Operation) {
		say := messages(r)
		if err := e.bootstrapTLS(say); err != nil {
			return nil, err
		}
		if err := e.startCatalog(ctx, say); err != nil {
			return nil, err
		}
		var err error
		if lock, err = e.Lock(ctx, o.Operation, o.LockTimeout, say); err != nil {
			return nil, err
		}
	}
	e.held = lock
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = lock.Release(rctx) // after catalog.destroy there is nothing left to release
	}()
	ctx, stop := WhileHeld(ctx, lock)
	defer stop()

	var p *plan.Plan
	if o.Saved != nil {
		p = o.Saved
		now := plan.Facts(e.Cfg, e.Observe(ctx))
		if p.ConfigHash != e.Cfg.Hash || plan.Fingerprint(now) != p.Fingerprint {
			return nil, &StalePlanError{ConfigChanged: p.ConfigHash != e.Cfg.Hash, Moved: plan.Moved(p.Facts, now)}
		}
	} else {
		var err error
		if p, err = e.Plan(ctx, o.PlanOptions); err != nil {
			return nil, err
		}
		if o.Filter != nil {
			p = o.Filter(p)
		}
		r.Report(report.PlanShown{Plan: p})
	}
	if p.Empty() {
		for _, d := range p.Diagnostics {
			if d.Summary == plan.RuntimeUnobserved {
				// Not "no changes": nothing could be compared.
				return p, fmt.Errorf("%s: %s", d.Summary, strings.SplitN(d.Detail, "\n", 2)[0])
			}
		}
		return p, nil
	}
	if o.Approve != nil {
		ok, err := o.Approve(p)
		if err != nil {
			return p, err
		}
		if !ok {
			return p, report.ErrCancelled
		}
	}
	r.Report(report.Applying{Operation: o.Operation, Plan: p})
	if err := e.Execute(ctx, p, r); err != nil {
		return p, err
	}
	return p, nil
}

// WhileHeld returns a context that ends, with ErrLockLost as its cause,
// when the lease is lost; long waits and the gaps between actions watch
// it, so the apply stops at the next safe point. stop releases the watcher.
func WhileHeld(parent context.Context, l Lease) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	lost := l.Lost()
	if lost == nil {
		return ctx, func() { cancel(nil) }
	}
	go func() {
		select {
		case <-lost:
			// The renewer also stops when the caller's context ends (Ctrl-C):
			// that is a cancel, not a lost lock.
			if parent.Err() == nil {
				cancel(ErrLockLost)
			}
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// lockable is false only when destroying a cluster whose managed catalog is
// already gone: starting Redis just to lock would recreate what destroy removed.
func (e *Env) lockable(op string) bool {
	c := e.Cfg.Catalog
	if c == nil || !c.Managed || op != "destroy" {
		return true
	}
	pctx, cancel := context.WithTimeout(context.Background(), ObserveTimeout)
	defer cancel()
	if e.Catalog.Ping(pctx) == nil {
		return true
	}
	_, err := os.Stat(c.DataDir)
	return err == nil
}

// startCatalog starts a managed catalog that is down before taking the lock
// that lives in it. Starting Redis is idempotent and touches no cluster data.
func (e *Env) startCatalog(ctx context.Context, out io.Writer) error {
	c := e.Cfg.Catalog
	if c == nil || !c.Managed {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
	err := e.Catalog.Ping(pctx)
	cancel()
	if err == nil {
		return nil
	}
	generated, err := e.ensureCatalogPassword()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Starting the managed Redis catalog at %s (the cluster lock lives there)...\n", c.Address)
	if generated {
		fmt.Fprintf(out, "Generated its password into %s (mode 0600).\n", c.PasswordFile)
	}
	if err := e.Runtime.StartCatalog(ctx); err != nil {
		return fmt.Errorf("start the managed catalog: %w", err)
	}
	return e.waitCatalog(ctx)
}

// ensureCatalogPassword generates the managed catalog's password when
// cluster.hcl declares none and pgha has not made one yet: 32 random bytes
// (crypto/rand), base64url, in PasswordFile (0600, directory 0700),
// created exclusively so that two pgha runs cannot write two passwords.
// It reports whether it made one.
func (e *Env) ensureCatalogPassword() (bool, error) {
	c := e.Cfg.Catalog
	if c == nil || !c.Managed || c.PasswordFile == "" || c.Password.Reveal() != "" {
		return false, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, fmt.Errorf("generate the catalog password: %w", err)
	}
	pw := base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(c.PasswordFile), 0o700); err != nil {
		return false, fmt.Errorf("catalog password: %w", err)
	}
	f, err := os.OpenFile(c.PasswordFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another pgha made it meanwhile: use that one.
		got, rerr := os.ReadFile(c.PasswordFile)
		if rerr != nil || strings.TrimSpace(string(got)) == "" {
			return false, fmt.Errorf("catalog password %s exists but cannot be read", c.PasswordFile)
		}
		pw = strings.TrimSpace(string(got))
	} else if err != nil {
		return false, fmt.Errorf("catalog password: %w", err)
	} else {
		_, werr := f.WriteString(pw + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			_ = os.Remove(c.PasswordFile)
			return false, fmt.Errorf("write the catalog password %s: %w", c.PasswordFile, werr)
		}
	}
	c.Password = config.NewSecret(pw)
	e.Catalog.SetPassword(pw)
	return err == nil, nil
}

// restartCatalog secures a managed catalog that runs without a password:
// the password (declared, or generated now) goes into a fresh redis.conf,
// Redis restarts with it, and pgha's client (the lease included) uses it
// from then on. The lock survives: Redis writes its appendonly file when
// it stops, and the lease outlives a restart of a few seconds.
func (e *Env) restartCatalog(ctx context.Context) error {
	generated, err := e.ensureCatalogPassword()
	if err != nil {
		return err
	}
	if generated {
		e.note("generated the catalog password into %s (mode 0600)", e.Cfg.Catalog.PasswordFile)
	}
	e.Catalog.SetPassword(e.Cfg.Catalog.Password.Reveal())
	if err := e.Runtime.RestartCatalog(ctx); err != nil {
		return fmt.Errorf("restart the managed catalog: %w", err)
	}
	return e.waitCatalog(ctx)
}

// waitCatalog waits until the catalog answers through the address pgha uses.
func (e *Env) waitCatalog(ctx context.Context) error {
	c := e.Cfg.Catalog
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(wctx, time.Second)
		err := e.Catalog.Ping(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("the managed catalog at %s does not answer: %w", c.Address, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
