package plan

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// shownParams is what apply read from Before and After before actions
// carried params, transcribed from the executors of format 1.0.
func shownParams(a Action) Params {
	var p Params
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	switch a.Kind {
	case CatalogDestroy, NodeDestroy:
		p.KeepVolume = a.After["volume"] == "kept"
	case DataRemove:
		p.Path = a.Before["path"]
	case SlotCreate:
		p.Slot = a.After["slot"]
	case SlotDrop:
		p.Slot, p.StreamedBy = a.Before["slot"], a.Before["streamed_by"]
	case StandbyRejoin:
		p.Method = a.After["method"]
	case SettingsUpdate:
		p.Restart = a.After["apply_by"] == "restart"
		if a.Target == SyncSetting {
			v := strings.Trim(a.After[SyncSetting], "'")
			p.SyncNames = &v
		}
	case Switchover:
		p.From, p.Resume = a.Before["primary"], a.Before["running"] == "false"
		p.Generation, _ = strconv.ParseInt(a.Before["generation"], 10, 64)
		p.Intended = a.Before["intent"] != ""
	case BackupTake:
		p.BackupType = a.After["type"]
	case BackupExpire:
		p.Backups = split(a.Before["backups"])
		p.WALBefore = a.Before["wal_before"]
	case NodeRemove:
		p.Port, _ = strconv.Atoi(a.Before["port"])
		p.DataDir = a.Before["data_dir"]
		p.DeleteData = a.After["data"] == "deleted"
		p.Aside = a.After["aside"]
	case Failover:
		p.Generation, _ = strconv.ParseInt(a.Before["generation"], 10, 64)
		p.Force = a.After["force"] == "true"
	case CatalogRecord:
		if a.Target == "synchronous" {
			p.Primary = a.Node
			p.Generation, _ = strconv.ParseInt(a.Before["generation"], 10, 64)
			p.SyncWait = a.After["when"] != ""
			p.SyncClear = a.After["synchronous_set"] == "(none)"
			if !p.SyncClear {
				p.Sync = shownSync(a.After["synchronous_set"], a.After["relaxed"])
			}
			break
		}
		if a.Change != Delete {
			p.Primary, p.Nodes, p.Rejoin, p.Event = a.After["primary"], split(a.After["nodes"]), split(a.After["rejoin"]), a.After["event"]
			p.Generation, _ = strconv.ParseInt(a.Before["generation"], 10, 64)
			p.Force = a.After["force"] == "true"
			p.ClearIntent = a.Before["switching_to"] != "" && a.After["switching_to"] == ""
		}
	}
	return p
}

// shownSync reads a synchronous set back from its display: "ANY 1 (db2,
// db3)", "relaxed to asynchronous" (with the reason shown apart) or
// "(none confirmed)".
func shownSync(set, relaxed string) *state.SyncRecord {
	r := &state.SyncRecord{Mode: "quorum"}
	switch {
	case relaxed != "":
		r.Relaxed, r.Reason = true, relaxed
	case strings.HasPrefix(set, "ANY ") || strings.HasPrefix(set, "FIRST "):
		if strings.HasPrefix(set, "FIRST ") {
			r.Mode = "priority"
		}
		_, rest, _ := strings.Cut(set, " ")
		n, list, _ := strings.Cut(rest, " ")
		r.Count, _ = strconv.Atoi(n)
		r.Standbys = strings.Split(strings.Trim(list, "()"), ", ")
	}
	return r
}

// TestParamsMatchDisplay: for every action of every plan the tests build
// (the case files, -delete-removed, destroy local and Docker, failover with and
// without -force), the typed params say what the display said, which is
// what apply executed before params existed: moving the executors to
// params changed no decision.
func TestParamsMatchDisplay(t *testing.T) {
	var plans []*Plan
	for _, cp := range casePlans(t) {
		plans = append(plans, cp.plan)
	}
	c := testCluster()
	s := converged(c)
	removeDB3(c, s)
	plans = append(plans, BuildWith(c, s, Options{DeleteRemoved: true}))
	for _, docker := range []bool{false, true} {
		for _, del := range []bool{false, true} {
			c := testCluster()
			c.Node("db1").PreventDestroy = false
			s := converged(c)
			if docker {
				dockerize(c, s)
			}
			for _, n := range s.Nodes {
				n.DirExists = true
			}
			p, err := BuildDestroy(c, s, DestroyOptions{DeleteVolumes: del})
			if err != nil {
				t.Fatal(err)
			}
			plans = append(plans, p)
		}
	}
	for _, force := range []bool{false, true} {
		c := testCluster()
		s := converged(c)
		stop(s.Node("db1"))
		s.Node("db2").ReceiveLSN = 0x3000148
		s.Node("db3").ReceiveLSN, s.Node("db3").ReplayLSN = 0x3000100, 0x3000100
		p, err := BuildFailover(c, s, FailoverOptions{Force: force})
		if err != nil {
			t.Fatal(err)
		}
		plans = append(plans, p)
	}

	seen := map[Kind]int{}
	set := map[string]bool{} // param fields seen non-zero
	for _, p := range plans {
		for _, a := range p.Actions {
			want := shownParams(a)
			if a.Kind == DataRemove {
				if bytesize.Format(a.Params.Bytes) != a.Before["size"] {
					t.Errorf("%s: bytes %d, shown %s", a.ID, a.Params.Bytes, a.Before["size"])
				}
				want.Bytes = a.Params.Bytes
			}
			if !reflect.DeepEqual(a.Params, want) {
				t.Errorf("%s %s: params %+v, the display says %+v", p.Operation, a.ID, a.Params, want)
			}
			seen[a.Kind]++
			v := reflect.ValueOf(a.Params)
			for i := range v.NumField() {
				if !v.Field(i).IsZero() {
					set[v.Type().Field(i).Name] = true
				}
			}
		}
	}
	for _, k := range Kinds {
		if seen[k] == 0 {
			t.Logf("no plan has a %s action", k)
		}
	}
	for f := range reflect.TypeFor[Params]().Fields() {
		if !set[f.Name] {
			t.Errorf("no plan sets params.%s: the test does not show it is filled", f.Name)
		}
	}
}
