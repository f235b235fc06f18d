package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/reconcile"
)

func cmdStatus(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("status", errw)
	asJSON := fs.Bool("json", false, "print as JSON (a stable contract; see README)")
	if fs.Parse(args) != nil {
		return exitError
	}
	return withEnv(*file, errw, func(env *reconcile.Env) int {
		st := reconcile.BuildStatus(env.Cfg, env.Observe(ctx))
		if *asJSON {
			b, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				return fail(errw, err)
			}
			fmt.Fprintln(out, string(b))
			return exitOK
		}
		fmt.Fprintf(out, "Cluster %s (declared primary %s)\n", st.Cluster, st.DeclaredPrimary)
		if c := st.Catalog; c != nil {
			switch {
			case !c.Reachable:
				fmt.Fprintf(out, "Catalog: redis %s unreachable: %s\n", c.Address, c.Error)
			case c.Generation > 0:
				fmt.Fprintf(out, "Catalog: redis %s, recorded primary %s, generation %d\n", c.Address, c.Primary, c.Generation)
			default:
				fmt.Fprintf(out, "Catalog: redis %s, no record yet\n", c.Address)
			}
			if c.Lock != nil {
				fmt.Fprintf(out, "Locked: %s\n", c.Lock)
			}
		}
		fmt.Fprintln(out)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tROLE\tRUNNING\tENDPOINT\tTIMELINE\tLSN\tLAG\tLAG TIME\tSLOT\tSTATE")
		for _, n := range st.Nodes {
			running := "no"
			if n.Running {
				running = "yes"
			}
			tl, lsn, lag, lagT, slot, stateS := "-", "-", "-", "-", "-", "-"
			if n.Timeline > 0 {
				tl = fmt.Sprint(n.Timeline)
			}
			if n.LSN != "" {
				lsn = n.LSN
			}
			if n.LagBytes != nil {
				lag = bytesize.Format(*n.LagBytes)
			}
			if n.LagSeconds != nil {
				lagT = fmt.Sprintf("%.1fs", *n.LagSeconds)
			}
			if n.Slot != "" {
				slot = n.Slot
			}
			switch {
			case n.Streaming:
				stateS = "streaming from " + n.Upstream
			case n.Role == "primary":
				stateS = "accepting writes"
			case n.Role == "standby":
				stateS = "not streaming"
			case n.Error != "":
				stateS = n.Error
			case !n.Running:
				stateS = "stopped"
			}
			if n.Undeclared {
				stateS = "not in cluster.hcl (`pgha apply` removes it); " + stateS
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, running, n.Host, n.Port, tl, lsn, lag, lagT, slot, stateS)
		}
		tw.Flush()
		return exitOK
	})
}
