// Package views holds the renderings of what a command shows, apart from
// the packages that compute it: plans, the events of a running apply
// (progress, notes, the outcome), status and backup lists, each as text
// for people (Human), as JSON for programs (JSON), and plans also as
// Markdown for a pull-request comment (Markdown). A command chooses its
// view once, as Terraform's do, and everything it shows goes through it;
// both renderings are made from the same data, so they never disagree.
package views

import (
	"io"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// PlanView renders a plan on its own, as `pgha plan` and `pgha show` do.
type PlanView interface {
	Plan(p *plan.Plan) error
}

// View is everything a command shows, in one rendering.
type View interface {
	PlanView
	// Report renders one event of apply, destroy, failover or failback,
	// which makes a View a reconcile.Reporter.
	Report(ev report.Event)
	// PlanSaved says where `pgha plan -out` saved the plan, and how to
	// apply it.
	PlanSaved(planFile, clusterFile string)
	// Status renders `pgha status`.
	Status(st report.Status) error
	// Backups renders `pgha backup list`: the backups, newest first,
	// where the list was read ("catalog" or "repository"), and the
	// windows a point-in-time restore can reach, one per timeline (none
	// without a WAL archive).
	Backups(list []state.Backup, source string, windows []state.RecoveryWindow) error
}

// New returns the JSON view when asJSON, else the human one, writing to
// w. version is pgha's, which a JSON stream names in its first line.
func New(asJSON bool, w io.Writer, version string) View {
	if asJSON {
		return NewJSON(w, version)
	}
	return NewHuman(w)
}
