package plan

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// FailoverOptions steer `pgha failover`.
type FailoverOptions struct {
	To    string // candidate chosen by the operator; "" = the best one
	Force bool   // promote although the primary answers or the candidate lags
}

// Candidate is a standby considered for promotion, and why it was or was
// not chosen.
type Candidate struct {
	Node     string    `json:"node"`
	Received state.LSN `json:"received_lsn"`
	Behind   int64     `json:"behind_bytes"`
	Eligible bool      `json:"eligible"`
	Why      string    `json:"why"`
}

// FailoverError refuses a failover, with the numbers.
type FailoverError struct {
	Reason     string
	Candidates []Candidate
}

func (e *FailoverError) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason)
	for _, c := range e.Candidates {
		fmt.Fprintf(&b, "\n  %s: %s", c.Node, c.Why)
	}
	return b.String()
}

// BuildFailover plans the promotion of a standby after the primary was
// lost: rank the candidates (most WAL received, then the declared
// priority, then declaration order),
// refuse one beyond failover.maximum_lag unless forced, fence the old
// primary where the runtime can reach it, promote, re-point the others to
// the new primary through their slots, and record a new generation.
func BuildFailover(c *config.Cluster, s *state.Cluster, o FailoverOptions) (*Plan, error) {
	old := c.Primary
	if rec := s.Catalog.Record; rec != nil && rec.Primary != "" {
		old = rec.Primary
	}
	var writable []string
	for _, n := range s.Nodes {
		if n.Role() == state.RolePrimary {
			writable = append(writable, n.Name)
		}
	}
	if len(writable) == 1 {
		old = writable[0]
	}
	on := s.Node(old)
	if on != nil && on.Role() == state.RolePrimary && !o.Force {
		return nil, &FailoverError{Reason: fmt.Sprintf("primary %s answers and accepts writes: a failover would lose what it has not shipped; "+
			"for a planned change edit primary in cluster.hcl (a lossless switchover), or pass -force", old)}
	}
	// The reference is the newest WAL position known: the old primary's
	// when it answers, else the most any standby received.
	var ref state.LSN
	refFrom := "the most any standby received; " + old + " does not answer"
	oldAnswers := on != nil && on.Reachable
	if oldAnswers {
		ref, refFrom = on.CurrentLSN, old+"'s current LSN"
	}
	var cands []Candidate
	for _, cn := range c.Nodes {
		n := s.Node(cn.Name)
		if cn.Name == old || n == nil {
			continue
		}
		cand := Candidate{Node: cn.Name, Received: max(n.ReceiveLSN, n.ReplayLSN)}
		switch {
		case !n.Reachable:
			cand.Why = "does not answer"
		case !n.InRecovery:
			cand.Why = "is not a standby"
		default:
			cand.Eligible = true
		}
		if cand.Eligible && !oldAnswers && cand.Received > ref {
			ref = cand.Received
		}
		cands = append(cands, cand)
	}
	for i := range cands {
		if cands[i].Eligible {
			cands[i].Behind = max(int64(ref)-int64(cands[i].Received), 0)
			cands[i].Why = fmt.Sprintf("received %s, %s behind %s (%s)", cands[i].Received, bytesize.Format(cands[i].Behind), ref, refFrom)
		}
	}
	syncWhy, err := restrictToSynchronous(c, s, old, cands, o)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].Eligible != cands[j].Eligible {
			return cands[i].Eligible
		}
		if cands[i].Received != cands[j].Received {
			return cands[i].Received > cands[j].Received
		}
		return c.Node(cands[i].Node).Priority > c.Node(cands[j].Node).Priority
	})
	var chosen *Candidate
	for i := range cands {
		if cands[i].Eligible && (o.To == "" || cands[i].Node == o.To) {
			chosen = &cands[i]
			break
		}
	}
	switch {
	case o.To != "" && c.Node(o.To) == nil:
		return nil, &FailoverError{Reason: fmt.Sprintf("-to %s names no node", o.To)}
	case chosen == nil:
		return nil, &FailoverError{Reason: "no standby can be promoted", Candidates: cands}
	case chosen.Behind > c.Failover.MaximumLag && !o.Force:
		return nil, &FailoverError{Reason: fmt.Sprintf("refused: %s is %s behind, more than failover.maximum_lag (%s); pass -force to promote it anyway and lose that WAL",
			chosen.Node, bytesize.Format(chosen.Behind), bytesize.Format(c.Failover.MaximumLag)), Candidates: cands}
	}

	b := &builder{c: c, s: s, p: newPlan(c, s, "failover"), target: chosen.Node, failover: true,
		blocked: map[string]bool{old: true}, rejoined: map[string]string{}}
	fence := newAction(NodeFence, Update, old, old, fmt.Sprintf("make sure the old primary %s cannot take writes: stop it if it runs, mark it a standby", old))
	fence.Before = map[string]string{"role": string(on.Role())}
	fence.After = map[string]string{"role": "fenced"}
	fenceID := b.add(fence)
	b.fenced = append(b.fenced, old)

	var others []string
	for _, cd := range cands {
		if cd.Node != chosen.Node {
			others = append(others, cd.Node+" "+cd.Why)
		}
	}
	gen, generation := "", int64(0)
	if rec := s.Catalog.Record; rec != nil {
		gen, generation = strconv.FormatInt(rec.Generation, 10), rec.Generation
	}
	what := "the most advanced standby within maximum_lag"
	if syncWhy != "" {
		what = syncWhy
	}
	a := newAction(Failover, Update, chosen.Node, chosen.Node, fmt.Sprintf("promote %s: %s (%s)", chosen.Node, what, chosen.Why))
	a.Before = map[string]string{"primary": old, "generation": gen}
	a.After = map[string]string{"primary": chosen.Node, "at_risk": bytesize.Format(chosen.Behind) + " (WAL " + old + " may have written that " + chosen.Node + " never received is lost)"}
	if len(others) > 0 {
		a.After["not_chosen"] = strings.Join(others, "; ")
	}
	a.Params = Params{Generation: generation, Force: o.Force}
	if o.Force {
		a.After["force"] = "true"
	}
	a.DependsOn = deps(fenceID)
	if chosen.Behind > 0 {
		a.DataLoss = true
		a.Reason += fmt.Sprintf("; the %s it never received are lost", bytesize.Format(chosen.Behind))
	}
	b.primaryUp = b.add(a)
	b.switched = b.primaryUp
	b.slots()
	for _, cn := range c.Nodes {
		if cn.Name == chosen.Node || cn.Name == old {
			continue
		}
		n := b.node(cn.Name)
		if !n.Running || !n.Reachable || !n.InRecovery {
			continue
		}
		if max(n.ReceiveLSN, n.ReplayLSN) > chosen.Received {
			// It has WAL the new primary never got: it cannot follow the
			// new timeline and must be rewound onto it.
			b.rejoin(cn, chosen.Node, []string{b.primaryUp, b.slotIDs[cn.Slot]})
			continue
		}
		b.follow(cn, n)
	}
	b.switchoverBackup()
	b.record()
	if o.Force {
		// A forced promotion is recorded even over a newer record: left
		// unrecorded, the promoted node would be a writable node the
		// catalog does not name, which the next plan fences.
		for i := range b.p.Actions {
			if a := &b.p.Actions[i]; a.Kind == CatalogRecord {
				a.Params.Force = true
				a.After["force"] = "true"
			}
		}
	}
	recordAfterPromotion(b.p, b.primaryUp)
	return b.p, nil
}

// restrictToSynchronous keeps, under replication { synchronous }, only
// the standbys the catalog records as synchronous with the lost primary
// eligible, and refuses when it cannot be sure that one of those that
// answer holds every acknowledged commit: under ANY n (or FIRST n) of k
// standbys, each acknowledged commit is on n of them, so k-n+1 of them
// must answer, and the most advanced of those is promoted. It returns
// what the promotion's reason says of it. -force promotes the most
// advanced standby whatever the record says, as it does past
// maximum_lag.
func restrictToSynchronous(c *config.Cluster, s *state.Cluster, old string, cands []Candidate, o FailoverOptions) (string, error) {
	if c.Replication.Synchronous == nil {
		return "", nil
	}
	var set *state.SyncRecord
	if rec := s.Catalog.Record; rec != nil {
		set = rec.Sync
	}
	if !set.Confirmed() {
		why := fmt.Sprintf("the catalog records no standby confirmed synchronous with %s (none was seen synchronous since it became primary)", old)
		if set != nil && set.Relaxed {
			why = fmt.Sprintf("%s was relaxed to asynchronous at %s (%s)", old, stamp(set.Since), set.Reason)
		}
		if o.Force {
			return "-force: the most advanced standby, although " + why, nil
		}
		return "", &FailoverError{Reason: "refused: replication is synchronous, but " + why +
			": no standby is known to hold every acknowledged commit; pass -force to promote the most advanced one anyway", Candidates: cands}
	}
	names := syncNamesOf(set.Mode, set.Count, set.Standbys)
	if o.Force {
		return fmt.Sprintf("-force: the most advanced standby, whatever the synchronous set of %s (%s)", old, names), nil
	}
	var answering []string
	for i := range cands {
		cd := &cands[i]
		switch {
		case !slices.Contains(set.Standbys, cd.Node):
			if cd.Eligible {
				cd.Why = fmt.Sprintf("was not synchronous with %s (recorded set %s)", old, names)
			}
			cd.Eligible = false
		case cd.Eligible:
			answering = append(answering, cd.Node)
		}
	}
	need := len(set.Standbys) - set.Count + 1
	if len(answering) < need {
		got := "none of them answers"
		if len(answering) > 0 {
			got = "only " + strings.Join(answering, ", ") + " answer(s)"
		}
		return "", &FailoverError{Reason: fmt.Sprintf("refused: the synchronous set of %s was %s, and %s as a standby: an acknowledged commit may be on the others alone, so %d of them must answer to be sure the one promoted holds every acknowledged commit; pass -force to promote anyway",
			old, names, got, need), Candidates: cands}
	}
	return fmt.Sprintf("the most advanced of the synchronous set of %s (%s; %s answer)", old, names, strings.Join(answering, ", ")), nil
}

// recordAfterPromotion moves a failover's catalog record to right after
// the promotion, depending on it and what came before (the fence), not
// on the re-pointing of the other standbys. The recorded primary is what
// health checks and load balancers route writes by (/primary says 200
// only for it), so every moment between promotion and record is a moment
// without a primary for clients; on Docker the re-pointing took 0.7 s of
// a 4-5 s failover seen through HAProxy. And a re-pointing that fails no
// longer leaves the promoted node unrecorded, a writable node the next
// plan would fence: the record is written, and the next plan finishes
// the standbys.
func recordAfterPromotion(p *Plan, promote string) {
	rec, at := -1, -1
	for i, a := range p.Actions {
		switch {
		case a.Kind == CatalogRecord:
			rec = i
		case a.ID == promote:
			at = i
		}
	}
	if rec < 0 || at < 0 || rec < at {
		return
	}
	a := p.Actions[rec]
	rest := append(p.Actions[:rec:rec], p.Actions[rec+1:]...)
	a.DependsOn = nil
	for _, b := range rest[:at+1] {
		a.DependsOn = append(a.DependsOn, b.ID)
	}
	p.Actions = append(rest[:at+1:at+1], append([]Action{a}, rest[at+1:]...)...)
}
