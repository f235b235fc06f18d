package plan

// Subset is the part of p an operation asks for: the actions seed picks,
// what they depend on, and, with dependents, the actions that depend on
// them (a switchover's rejoin and record), in p's order. The watcher's
// restart in place and the API's switchover both run a Subset of an
// apply plan rather than the whole of it.
func Subset(p *Plan, seed func(Action) bool, dependents bool) *Plan {
	keep := map[string]bool{}
	for _, a := range p.Actions {
		if seed(a) {
			keep[a.ID] = true
		}
	}
	if dependents && len(keep) > 0 {
		for _, a := range p.Actions { // dependencies come first in a plan
			for _, d := range a.DependsOn {
				if keep[d] {
					keep[a.ID] = true
				}
			}
		}
	}
	for i := len(p.Actions) - 1; i >= 0; i-- {
		if a := p.Actions[i]; keep[a.ID] {
			for _, d := range a.DependsOn {
				keep[d] = true
			}
		}
	}
	out := *p
	out.Actions = nil
	for _, a := range p.Actions {
		if keep[a.ID] {
			out.Actions = append(out.Actions, a)
		}
	}
	return &out
}
