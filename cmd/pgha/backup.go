package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pgha/pgha/backup/pitr"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/views"
)

func cmdBackup(ctx context.Context, args []string, out, errw io.Writer) int {
	// `pgha backup list|verify|drill` take their flags before or after the word.
	for i, a := range args {
		if (a == "list" || a == "verify" || a == "drill") && (i == 0 || args[i-1] != "-f" && args[i-1] != "-type") {
			rest := append(append([]string{}, args[:i]...), args[i+1:]...)
			switch a {
			case "verify":
				return cmdBackupVerify(ctx, rest, out, errw)
			case "drill":
				return cmdBackupDrill(ctx, rest, out, errw)
			}
			return cmdBackupList(ctx, rest, out, errw)
		}
	}
	fs, file := newFlags("backup", errw)
	kind := fs.String("type", "full", "full, incremental (the WAL since the newest backup) or differential (the WAL since the newest full)")
	asJSON := fs.Bool("json", false, "print what happens as a stream of JSON objects, one per line (format in README), the backup taken last before the outcome")
	if fs.Parse(args) != nil {
		return exitError
	}
	v := views.New(*asJSON, out, version)
	c := load(*file, errw)
	if c == nil {
		v.Report(report.Outcome{Operation: "backup", Err: fmt.Errorf("%s has errors (see stderr)", *file)})
		return exitError
	}
	env, err := reconcile.Open(c)
	if err != nil {
		// The stream still ends with its outcome; stderr says why.
		v.Report(report.Outcome{Operation: "backup", Err: err})
		return fail(ctx, errw, err)
	}
	defer env.Close()
	if _, err := env.Backup(ctx, *kind, v); err != nil {
		return fail(ctx, errw, err)
	}
	return exitOK
}

func cmdBackupList(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("backup list", errw)
	asJSON := fs.Bool("json", false, "print as JSON")
	if fs.Parse(args) != nil {
		return exitError
	}
	v := views.New(*asJSON, out, version)
	return withEnv(ctx, *file, errw, func(env *reconcile.Env) int {
		list, from, err := env.Backups(ctx)
		if err != nil {
			return fail(ctx, errw, err)
		}
		windows, err := env.RecoveryWindows(list)
		if err != nil {
			// The list stands without the windows; stderr says why.
			fmt.Fprintf(errw, "Warning: the WAL archive could not be read, so the recoverable window is not shown: %v\n", err)
		}
		if err := v.Backups(list, from, windows); err != nil {
			return fail(ctx, errw, err)
		}
		return exitOK
	})
}

func cmdBackupVerify(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("backup verify", errw)
	restore := fs.Bool("restore", false, "also restore into a scratch instance, start it and query it")
	asJSON := fs.Bool("json", false, "print what happens as a stream of JSON objects, one per line (format in README), the outcome last")
	if fs.Parse(args) != nil {
		return exitError
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(errw, "Usage: pgha backup verify [-restore] [-json] [-f FILE] ID")
		return exitError
	}
	v := views.New(*asJSON, out, version)
	return withEnv(ctx, *file, errw, func(env *reconcile.Env) int {
		if err := env.VerifyBackup(ctx, fs.Arg(0), *restore, v); err != nil {
			return fail(ctx, errw, err)
		}
		return exitOK
	})
}

func cmdBackupDrill(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("backup drill", errw)
	asJSON := fs.Bool("json", false, "print what happens as a stream of JSON objects, one per line (format in README), the outcome last")
	if fs.Parse(args) != nil {
		return exitError
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(errw, "Usage: pgha backup drill [-json] [-f FILE]")
		return exitError
	}
	v := views.New(*asJSON, out, version)
	return withEnv(ctx, *file, errw, func(env *reconcile.Env) int {
		if err := env.Drill(ctx, v); err != nil {
			return fail(ctx, errw, err)
		}
		return exitOK
	})
}

func cmdRestore(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("restore", errw)
	dir := fs.String("target-dir", "", "a new directory to restore into (never overwritten)")
	node := fs.String("node", "", "the declared primary to restore over (its data directory is moved aside), then started")
	auto := fs.Bool("auto-approve", false, "restore over -node without asking")
	asJSON := fs.Bool("json", false, "print what happens as a stream of JSON objects, one per line (format in README), the outcome last; with -node it needs -auto-approve")
	toTime := fs.String("to-time", "", "restore to this moment (RFC 3339; UTC without a zone) from a full and the WAL archive, instead of a backup ID")
	toLSN := fs.String("to-lsn", "", "restore to this WAL position (such as 0/5000028) from a full and the WAL archive")
	toName := fs.String("to-restore-point", "", "restore to this named restore point (pg_create_restore_point) from a full and the WAL archive")
	if fs.Parse(args) != nil {
		return exitError
	}
	target, err := pitr.ParseTarget(*toTime, *toLSN, *toName)
	if err != nil {
		fmt.Fprintln(errw, "Error:", err)
		return exitError
	}
	id := fs.Arg(0)
	if fs.NArg() > 1 || (fs.NArg() == 1) == (target.Kind() != "") || (*dir == "") == (*node == "") {
		fmt.Fprintln(errw, "Usage: pgha restore [-f FILE] [-json] (-target-dir DIR | -node NAME [-auto-approve]) (ID | -to-time T | -to-lsn L | -to-restore-point NAME)")
		return exitError
	}
	if *asJSON && *node != "" && !*auto {
		// The question would be a line of no JSON in the stream, and
		// nobody reading it could answer.
		fmt.Fprintln(errw, "Error: restore -json -node needs -auto-approve: a JSON stream cannot ask for confirmation")
		return exitError
	}
	v := views.New(*asJSON, out, version)
	return withEnv(ctx, *file, errw, func(env *reconcile.Env) int {
		if *node != "" {
			ask := func(summary string) (bool, error) {
				if *asJSON {
					v.Report(report.Message{Text: summary})
					return true, nil // -auto-approve, checked above
				}
				fmt.Fprintln(out, summary)
				if *auto {
					return true, nil
				}
				return confirm("Do you want to restore over "+*node+"?", out)
			}
			err = env.RestoreNode(ctx, id, target, *node, ask, v)
		} else {
			err = env.Restore(ctx, id, target, *dir, v)
		}
		if errors.Is(err, report.ErrCancelled) {
			fmt.Fprintln(out, "\nRestore cancelled: nothing was touched.")
			return exitError
		}
		if err != nil {
			return fail(ctx, errw, err)
		}
		return exitOK
	})
}
