// Command pgha keeps a PostgreSQL high-availability cluster in the state
// declared in cluster.hcl. This file holds flags, prompts and exit codes;
// everything else lives in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// version is set by the Makefile with -ldflags.
var version = "dev"

// Exit codes, as Terraform users expect them.
const (
	exitOK      = 0
	exitError   = 1
	exitChanges = 2 // plan -detailed-exitcode: the plan has changes
	exitFormat  = 3 // fmt -check: files need formatting
	// exitCritical: plan -detailed-exitcode found something pgha cannot
	// fix alone (a split brain, a primary with no data...); it wins over
	// exitChanges, so that a dry-run audit never passes a broken cluster.
	exitCritical = 4
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, out, errw io.Writer) int
}

func commands() []command {
	return []command{
		{"validate", "Check cluster.hcl without touching anything", cmdValidate},
		{"fmt", "Rewrite cluster files in the canonical format", cmdFmt},
		{"plan", "Show what apply would change, and why", cmdPlan},
		{"show", "Show a saved plan as text, JSON or Markdown (for a pull request)", cmdShow},
		{"apply", "Make the cluster match cluster.hcl", cmdApply},
		{"failover", "Promote the best standby after the primary was lost (preview first)", cmdFailover},
		{"failback", "Rejoin former primaries (pg_rewind) and switch back to the declared primary", cmdFailback},
		{"watch", "Keep the cluster as declared: fail over, heal, apply edits (per policy)", cmdWatch},
		{"agent", "Run on a node's host: hold its member lease, stop its primary when cut off (self-fencing)", cmdAgent},
		{"archive", "Stream the primary's WAL into the backup repository (the watcher does it too)", cmdArchive},
		{"status", "Show nodes, roles, LSNs and lag", cmdStatus},
		{"backup", "Take a full backup now; `backup list` lists them, `backup verify` checks one", cmdBackup},
		{"restore", "Restore a backup chain into a new directory, or over the primary (-node)", cmdRestore},
		{"destroy", "Stop every node and delete its data", cmdDestroy},
		{"force-unlock", "Remove a cluster lock whose holder is gone", cmdForceUnlock},
		{"version", "Print the pgha version", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: pgha <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command but show takes -f FILE (default ./cluster.hcl). Run `pgha <command> -h` for its flags.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, out, errw io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(out)
		if len(args) == 0 {
			return exitError
		}
		return exitOK
	}
	if args[0] == "-version" || args[0] == "--version" {
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], out, errw)
		}
	}
	fmt.Fprintf(errw, "pgha: unknown command %q\n\n", args[0])
	usage(errw)
	return exitError
}

func cmdVersion(_ context.Context, _ []string, out, _ io.Writer) int {
	fmt.Fprintf(out, "pgha %s\n", version)
	return exitOK
}

// fail prints an error the way every command does and returns exitError.
// "interrupted" stands for an error that is only a cancel of ctx, the
// command's own context, which ends on Ctrl-C or SIGTERM. A cancel from
// inside — an apply whose lock was lost cancels its actions — is printed
// whole: it says why, and what was not attempted.
func fail(ctx context.Context, errw io.Writer, err error) int {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		fmt.Fprintln(errw, "Error: interrupted")
		return exitError
	}
	fmt.Fprintf(errw, "Error: %v\n", err)
	return exitError
}

// logHandler is the handler of a long-running command's log on errw in
// format (-log-format: text or json); false, said on errw, for another.
func logHandler(errw io.Writer, format string, o *slog.HandlerOptions) (slog.Handler, bool) {
	switch format {
	case "text":
		return slog.NewTextHandler(errw, o), true
	case "json":
		return slog.NewJSONHandler(errw, o), true
	}
	fmt.Fprintf(errw, "Error: -log-format is text or json, not %q\n", format)
	return nil, false
}
