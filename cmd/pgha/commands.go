package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/views"
)

// flags is a FlagSet with the -f flag every command shares.
func newFlags(name string, errw io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("pgha "+name, flag.ContinueOnError)
	fs.SetOutput(errw)
	file := fs.String("f", "cluster.hcl", "the cluster file")
	return fs, file
}

// load reads and validates the cluster file, printing diagnostics with
// their source lines. A nil cluster means the command must stop here.
func load(path string, errw io.Writer) *config.Cluster {
	r := clusterfile.Load(path)
	if len(r.Diags) > 0 {
		_ = r.WriteDiagnostics(errw)
	}
	if r.Diags.HasErrors() {
		return nil
	}
	return r.Cluster
}

// withEnv loads the cluster file, opens its providers for f and closes
// them afterwards; f's result is the exit code.
func withEnv(ctx context.Context, path string, errw io.Writer, f func(env *reconcile.Env) int) int {
	c := load(path, errw)
	if c == nil {
		return exitError
	}
	env, err := reconcile.Open(c)
	if err != nil {
		return fail(ctx, errw, err)
	}
	defer env.Close()
	return f(env)
}

func cmdValidate(_ context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("validate", errw)
	if fs.Parse(args) != nil {
		return exitError
	}
	c := load(*file, errw)
	if c == nil {
		return exitError
	}
	fmt.Fprintf(out, "Success! %s is valid: cluster %q, %d nodes, primary %s.\n", *file, c.Name, len(c.Nodes), c.Primary)
	return exitOK
}

func cmdFmt(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("fmt", errw)
	check := fs.Bool("check", false, "do not write; exit 3 when a file is not formatted")
	diff := fs.Bool("diff", false, "print the changes as a unified diff")
	if fs.Parse(args) != nil {
		return exitError
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{*file}
	}
	code := exitOK
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return fail(ctx, errw, fmt.Errorf("fmt: %w", err))
		}
		formatted := clusterfile.Format(src)
		if bytes.Equal(src, formatted) {
			continue
		}
		fmt.Fprintln(out, f)
		if *diff {
			printDiff(out, f, src, formatted)
		}
		if *check {
			code = exitFormat
			continue
		}
		if err := os.WriteFile(f, formatted, 0o644); err != nil {
			return fail(ctx, errw, fmt.Errorf("fmt: %w", err))
		}
	}
	return code
}

// printDiff shows a unified diff with diff(1), which every Debian has.
func printDiff(out io.Writer, name string, a, b []byte) {
	dir, err := os.MkdirTemp("", "pgha-fmt")
	if err != nil {
		return
	}
	defer os.RemoveAll(dir)
	pa, pb := dir+"/old", dir+"/new"
	_ = os.WriteFile(pa, a, 0o600)
	_ = os.WriteFile(pb, b, 0o600)
	d, _ := exec.Command("diff", "-u", "--label", name, "--label", name+" (formatted)", pa, pb).Output()
	out.Write(d)
}

func cmdPlan(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("plan", errw)
	asJSON := fs.Bool("json", false, "print the plan as JSON (format documented in README)")
	outFile := fs.String("out", "", "save the plan to this file for `pgha apply FILE`")
	detailed := fs.Bool("detailed-exitcode", false, "exit 0 with no changes, 1 on error, 2 with changes, 4 with a critical finding")
	destroy := fs.Bool("destroy", false, "plan the destruction of the cluster")
	delRemoved := fs.Bool("delete-removed", false, "plan to delete the data of nodes removed from the cluster file instead of moving it aside")
	delVolumes := fs.Bool("delete-volumes", false, "with -destroy, docker runtime: also delete the volumes (the data)")
	if fs.Parse(args) != nil {
		return exitError
	}
	v := views.New(*asJSON, out, version)
	return withEnv(ctx, *file, errw, func(env *reconcile.Env) int {
		o := reconcile.PlanOptions{Build: plan.Options{DeleteRemoved: *delRemoved}}
		if *destroy {
			o = reconcile.PlanOptions{Operation: "destroy", Destroy: plan.DestroyOptions{DeleteVolumes: *delVolumes}}
		}
		p, err := env.Plan(ctx, o)
		if err != nil {
			return fail(ctx, errw, err)
		}
		if err := v.Plan(p); err != nil {
			return fail(ctx, errw, err)
		}
		if *outFile != "" {
			if err := plan.WriteFile(*outFile, p); err != nil {
				return fail(ctx, errw, err)
			}
			v.PlanSaved(*outFile, *file)
		}
		switch {
		case *detailed && p.Critical():
			return exitCritical
		case *detailed && !p.Empty():
			return exitChanges
		}
		return exitOK
	})
}

func cmdApply(ctx context.Context, args []string, out, errw io.Writer) int {
	return runApply(ctx, "apply", args, out, errw)
}

func cmdDestroy(ctx context.Context, args []string, out, errw io.Writer) int {
	return runApply(ctx, "destroy", args, out, errw)
}

func cmdFailover(ctx context.Context, args []string, out, errw io.Writer) int {
	return runApply(ctx, "failover", args, out, errw)
}

func cmdFailback(ctx context.Context, args []string, out, errw io.Writer) int {
	return runApply(ctx, "failback", args, out, errw)
}

func runApply(ctx context.Context, op string, args []string, out, errw io.Writer) int {
	fs, file := newFlags(op, errw)
	var to *string
	var force, noSwitch *bool
	switch op {
	case "failover":
		to = fs.String("to", "", "the standby to promote (default: the most advanced one)")
		force = fs.Bool("force", false, "promote although the primary answers, the candidate lags beyond maximum_lag, or the catalog moved")
	case "failback":
		noSwitch = fs.Bool("no-switchover", false, "rejoin former primaries but keep the current primary")
	}
	auto := fs.Bool("auto-approve", false, "do not ask for approval")
	asJSON := fs.Bool("json", false, "print what happens as a stream of JSON objects, one per line (format in README); needs -auto-approve or a saved plan")
	lockTimeout := fs.Duration("lock-timeout", 0, "how long to wait for the cluster lock (e.g. 30s)")
	var delVolumes *bool
	if op == "destroy" {
		delVolumes = fs.Bool("delete-volumes", false, "docker runtime: also delete the volumes (the data); never implied by -auto-approve")
	}
	var delRemoved *bool
	if op == "apply" {
		delRemoved = fs.Bool("delete-removed", false, "delete the data of nodes removed from the cluster file instead of moving it aside; never implied by -auto-approve")
	}
	if fs.Parse(args) != nil {
		return exitError
	}
	saved := op == "apply" && fs.NArg() > 0
	if *asJSON && !*auto && !saved {
		// As in Terraform: a machine reads the stream, and nobody can
		// answer a prompt inside it.
		fmt.Fprintf(errw, "Error: %s -json needs -auto-approve (or, for apply, a saved plan): there is no prompt in a machine-readable stream\n", op)
		return exitError
	}
	v := views.New(*asJSON, out, version)
	// stop ends a run that failed before it started: the stream still
	// ends with its outcome, and stderr says why, as for every command.
	stop := func(err error) int {
		v.Report(report.Outcome{Operation: op, Err: err})
		return fail(ctx, errw, err)
	}
	o := reconcile.RunOptions{PlanOptions: reconcile.PlanOptions{Operation: op}, LockTimeout: *lockTimeout, Events: v}
	if delVolumes != nil {
		o.Destroy.DeleteVolumes = *delVolumes
	}
	if to != nil {
		o.Failover = plan.FailoverOptions{To: *to, Force: *force}
	}
	if noSwitch != nil {
		o.Build.NoSwitchover = *noSwitch
	}
	if delRemoved != nil {
		o.Build.DeleteRemoved = *delRemoved
	}
	if saved {
		p, err := plan.ReadFile(fs.Arg(0))
		if err != nil {
			return stop(err)
		}
		o.Saved = p // a saved plan was reviewed already: no prompt, as in Terraform
	} else if !*auto {
		o.Approve = func(p *plan.Plan) (bool, error) { return approve(op, p, out) }
	}
	c := load(*file, errw)
	if c == nil {
		v.Report(report.Outcome{Operation: op, Err: fmt.Errorf("%s has errors (see stderr)", *file)})
		return exitError
	}
	env, err := reconcile.Open(c)
	if err != nil {
		return stop(err)
	}
	defer env.Close()
	_, err = env.Run(ctx, o)
	switch {
	case errors.Is(err, report.ErrCancelled):
		fmt.Fprintf(errw, "\n%s cancelled.\n", strings.ToUpper(op[:1])+op[1:])
		return exitError
	case err != nil:
		return fail(ctx, errw, err)
	}
	return exitOK
}

// approve asks for "yes" on the terminal, as Terraform does.
func approve(op string, p *plan.Plan, out io.Writer) (bool, error) {
	q := "Do you want to perform these actions?"
	if op == "failover" {
		q = "Do you want to fail over as shown?"
	}
	if op == "destroy" {
		q = "Do you really want to destroy the cluster " + p.Cluster + "?"
	}
	fmt.Fprintf(out, "\n%s\n", q)
	if p.DataLoss() {
		fmt.Fprintln(out, "  Some actions DISCARD DATA (marked !! above); they cannot be undone.")
	}
	return confirm("", out)
}

// confirm asks q (when given) and reads the operator's answer: only
// "yes" approves.
func confirm(q string, out io.Writer) (bool, error) {
	if q != "" {
		fmt.Fprintf(out, "\n%s\n", q)
	}
	fmt.Fprint(out, "  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read approval: %w", err)
	}
	return strings.TrimSpace(line) == "yes", nil
}

func cmdForceUnlock(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("force-unlock", errw)
	if fs.Parse(args) != nil {
		return exitError
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(errw, "Usage: pgha force-unlock [-f FILE] LOCK_ID (the ID is in the error of the blocked command)")
		return exitError
	}
	return withEnv(ctx, *file, errw, func(env *reconcile.Env) int {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := env.ForceUnlock(ctx, fs.Arg(0)); err != nil {
			return fail(ctx, errw, err)
		}
		fmt.Fprintf(out, "The cluster lock %s was removed.\n", fs.Arg(0))
		return exitOK
	})
}
