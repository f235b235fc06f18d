package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Saved plan files. This file is the one place in plan that touches the
// disk: plan is otherwise a function of config and state, and TestPurity
// allows package os here and nowhere else in plan's dependencies.

// WriteFile saves a plan for a later `pgha apply FILE`.
func WriteFile(path string, p *Plan) error {
	b, err := JSON(p)
	if err != nil {
		return fmt.Errorf("encode plan: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

// ReadFile loads a saved plan, refusing formats it does not understand
// and plans that are not well formed (see Decode).
func ReadFile(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	p, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	return p, nil
}

// Decode reads a saved plan (the JSON that WriteFile writes). A saved plan
// is executed as it stands, so beyond the format version it must be well
// formed: one JSON object and nothing after it, unknown fields refused,
// actions of known kinds and changes, unique IDs, dependencies that name
// an earlier action. A file edited by hand into something apply was never
// asked to show is refused here rather than half-executed.
func Decode(b []byte) (*Plan, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var in struct {
		*Plan
		Summary *Summary `json:"summary"`
	}
	in.Plan = &Plan{}
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("not a pgha plan file: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("not a pgha plan file: data after the plan")
	}
	p := in.Plan
	minor, ok := strings.CutPrefix(p.FormatVersion, "1.")
	if !ok {
		return nil, fmt.Errorf("format_version %q is not supported by this pgha (wants 1.x)", p.FormatVersion)
	}
	if m, err := strconv.Atoi(minor); err != nil || m < MinSavedVersion {
		return nil, fmt.Errorf("format_version %q: this plan file was written by an older pgha, and its actions carry no params, which apply reads; run `pgha plan -out FILE` again", p.FormatVersion)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("not a plan pgha made: %w", err)
	}
	if in.Summary != nil && *in.Summary != p.Summary() {
		return nil, fmt.Errorf("not a plan pgha made: its summary %+v does not count its actions (%+v)", *in.Summary, p.Summary())
	}
	return p, nil
}

// check is what every plan Build returns satisfies.
func (p *Plan) check() error {
	switch p.Operation {
	case "apply", "destroy", "failover":
	default:
		return fmt.Errorf("operation %q", p.Operation)
	}
	seen := map[string]bool{}
	for i, a := range p.Actions {
		if !slices.Contains(Kinds, a.Kind) {
			return fmt.Errorf("action %d: unknown kind %q", i+1, a.Kind)
		}
		if a.Change.Symbol() == "?" {
			return fmt.Errorf("action %d (%s): unknown change %q", i+1, a.ID, a.Change)
		}
		if a.ID == "" || seen[a.ID] {
			return fmt.Errorf("action %d: id %q is empty or repeated", i+1, a.ID)
		}
		if miss := a.missingParam(); miss != "" {
			return fmt.Errorf("action %s has no params.%s", a.ID, miss)
		}
		for _, d := range a.DependsOn {
			if !seen[d] {
				return fmt.Errorf("action %s depends on %q, which is not an earlier action", a.ID, d)
			}
		}
		seen[a.ID] = true
	}
	return nil
}

// missingParam names a param that an action of this kind cannot be
// executed without, or returns "". An edited plan that lost one is
// refused instead of acting on an empty name.
func (a *Action) missingParam() string {
	p := a.Params
	switch a.Kind {
	case SlotCreate, SlotDrop:
		if p.Slot == "" {
			return "slot"
		}
	case DataRemove:
		if p.Path == "" {
			return "path"
		}
	case NodeRemove:
		if p.DataDir == "" {
			return "data_dir"
		}
	case StandbyRejoin:
		if !slices.Contains([]string{"rewind", "reclone", "rewind-or-reclone"}, p.Method) {
			return "method"
		}
	case Switchover:
		if p.From == "" {
			return "from"
		}
	case BackupTake:
		if p.BackupType == "" {
			return "backup_type"
		}
	case BackupExpire:
		if len(p.Backups) == 0 {
			return "backups"
		}
	case CatalogRecord:
		if a.Target == "synchronous" {
			switch {
			case p.Primary == "":
				return "primary"
			case p.Sync == nil && !p.SyncClear:
				return "sync"
			}
			return ""
		}
		if a.Change != Delete && p.Primary == "" {
			return "primary"
		}
		if a.Change != Delete && len(p.Nodes) == 0 {
			return "nodes"
		}
	}
	return ""
}
