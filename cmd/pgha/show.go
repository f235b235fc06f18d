package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/views"
)

// cmdShow renders a saved plan, as `terraform show` does, for a reviewer
// who cannot run pgha where the plan was made: the text plan, the JSON
// contract, or Markdown for a pull-request comment. It reads only the
// plan file (checked as apply checks it), never the cluster.
func cmdShow(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("pgha show", flag.ContinueOnError)
	fs.SetOutput(errw)
	asJSON := fs.Bool("json", false, "print the plan as JSON (the format documented in README)")
	asMarkdown := fs.Bool("markdown", false, "print the plan as Markdown for a pull-request comment; parts of at most 65,536 bytes separated by a line "+views.PartSeparator)
	fs.Usage = func() {
		fmt.Fprintln(errw, "Usage: pgha show [-json|-markdown] PLANFILE")
		fs.PrintDefaults()
	}
	if fs.Parse(args) != nil {
		return exitError
	}
	if fs.NArg() != 1 || (*asJSON && *asMarkdown) {
		fs.Usage()
		return exitError
	}
	p, err := plan.ReadFile(fs.Arg(0))
	if err != nil {
		return fail(ctx, errw, err)
	}
	var v views.PlanView = views.New(*asJSON, out, version)
	if *asMarkdown {
		v = views.NewMarkdown(out)
	}
	if err := v.Plan(p); err != nil {
		return fail(ctx, errw, fmt.Errorf("show: %w", err))
	}
	return exitOK
}
