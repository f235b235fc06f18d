package views

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// TestStatusAndBackupsJSON: `status -json` and `backup list -json` are
// contracts (README) and moved into the views unchanged: the indented
// object they always were, one trailing newline.
func TestStatusAndBackupsJSON(t *testing.T) {
	lag := int64(0)
	st := report.Status{Cluster: "demo", DeclaredPrimary: "db1", ObservedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Nodes: []report.NodeStatus{{Name: "db2", Role: state.RoleStandby, Running: true, LagBytes: &lag, Streaming: true, Upstream: "127.0.0.1:5441"}}}
	list := []state.Backup{{ID: "20261201T020000Z", Type: "full", Node: "db1", DatabaseBytes: 100, StoredBytes: 40, Status: "complete"}}
	for _, tc := range []struct {
		name   string
		render func(v View) error
		want   any
	}{
		{"status", func(v View) error { return v.Status(st) }, st},
		{"backups", func(v View) error { return v.Backups(list, "catalog") }, map[string]any{"source": "catalog", "backups": list}},
	} {
		var buf bytes.Buffer
		if err := tc.render(NewJSON(&buf, "dev")); err != nil {
			t.Fatal(err)
		}
		want, _ := json.MarshalIndent(tc.want, "", "  ")
		if buf.String() != string(want)+"\n" {
			t.Errorf("%s -json\n got %s\nwant %s", tc.name, buf.String(), want)
		}
	}
	var buf bytes.Buffer
	if err := NewHuman(&buf).Backups(list, "repository"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if lines[0] != "(the catalog does not answer: read from the repository's manifests)" || !strings.HasPrefix(lines[1], "ID ") ||
		!strings.Contains(lines[2], "20261201T020000Z") || !strings.Contains(lines[2], "40%") {
		t.Errorf("backup list:\n%s", buf.String())
	}
}
