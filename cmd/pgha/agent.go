package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/pgha/pgha/reconcile"
)

// cmdAgent is `pgha agent -node NAME`: run on the node's own host, it
// holds the node's member lease and stops the node's primary when the
// host loses the authority for agent.self_fence, or when the authority
// records another primary at a newer generation (reconcile.Agent). Its
// decisions are a JSON log on stderr. SIGTERM releases the lease.
func cmdAgent(ctx context.Context, args []string, _, errw io.Writer) int {
	fs, file := newFlags("agent", errw)
	fs.StringVar(file, "file", "cluster.hcl", "the cluster file (same as -f)")
	node := fs.String("node", "", "the node whose host this is (required)")
	format := fs.String("log-format", "json", "decision log on stderr: json (one object per line) or text")
	if fs.Parse(args) != nil {
		return exitError
	}
	if *node == "" {
		fmt.Fprintln(errw, "Error: -node NAME is required: the node whose PostgreSQL runs on this host")
		return exitError
	}
	h, ok := logHandler(errw, *format, nil)
	if !ok {
		return exitError
	}
	path, err := filepath.Abs(*file)
	if err != nil {
		return fail(ctx, errw, err)
	}
	c := load(path, errw)
	if c == nil {
		return exitError
	}
	env, err := reconcile.Open(c)
	if err != nil {
		return fail(ctx, errw, err)
	}
	defer env.Close()
	env.Actor = "pgha agent " + *node
	a := &reconcile.Agent{Env: env, Node: *node, Log: slog.New(h)}
	if err := a.Run(ctx); err != nil {
		return fail(ctx, errw, err)
	}
	return exitOK
}
