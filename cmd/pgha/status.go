package main

import (
	"context"
	"io"

	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/views"
)

func cmdStatus(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("status", errw)
	asJSON := fs.Bool("json", false, "print as JSON (a stable contract; see README)")
	if fs.Parse(args) != nil {
		return exitError
	}
	v := views.New(*asJSON, out, version)
	return withEnv(ctx, *file, errw, func(env *reconcile.Env) int {
		if err := v.Status(reconcile.BuildStatus(env.Cfg, env.Observe(ctx))); err != nil {
			return fail(ctx, errw, err)
		}
		return exitOK
	})
}
