package pgdata

import (
	"strings"
	"testing"
)

func TestIsAsideOf(t *testing.T) {
	dir := "/var/lib/pgha/data"
	for path, want := range map[string]bool{
		dir + ".aside-20260101T000000Z":          true,
		dir + ".before-restore-20260101T000000Z": true,
		AsidePath(dir, "s"):                      true,
		BeforeRestorePath(dir, "s"):              true,
		dir:                                      false,
		dir + ".aside-":                          false,
		dir + ".aside-..":                        false,
		dir + ".aside-x/../../etc":               false,
		dir + "x.aside-1":                        false,
		"/etc":                                   false,
	} {
		if got := IsAsideOf(dir, path); got != want {
			t.Errorf("IsAsideOf(%s) = %v, want %v", path, got, want)
		}
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	m := Marker{Cluster: "demo", Node: "db1"}
	text, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), Header+"\n") {
		t.Errorf("the marker does not start with pgha's header: %q", text)
	}
	if got, err := ParseMarker(string(text)); err != nil || got != m {
		t.Errorf("ParseMarker(Text()) = %+v, %v", got, err)
	}
	if _, err := (Marker{Cluster: "a\ncluster = b"}).Text(); err == nil {
		t.Error("a cluster name with a line break made a marker")
	}
	if _, err := ParseMarker(Header + "\nnode = db1\n"); err == nil || !strings.Contains(err.Error(), "names no cluster") {
		t.Errorf("a marker without a cluster: %v", err)
	}
}

func TestParsePostmaster(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    Postmaster
		wantErr bool
	}{
		{"", Postmaster{}, false},
		{"4242\n/var/lib/pgha/data\n1700000000\n5433\n/var/run/postgresql\n", Postmaster{PID: 4242, Port: 5433}, false},
		{"4242\n/data\n", Postmaster{PID: 4242}, false},
		{"4242\n/data\n1700000000\n5433\n/tmp\n*\n  1234567   98304\nstarting\n", Postmaster{PID: 4242, Port: 5433, Status: PMStarting}, false},
		{"4242\n/data\n1700000000\n5433\n/tmp\n*\n  1234567   98304\nready   \n", Postmaster{PID: 4242, Port: 5433, Status: PMReady}, false},
		{"garbage\n/data\n1\n5432\n", Postmaster{Port: 5432}, true},
		{"-1\n", Postmaster{}, true},
	} {
		got, err := ParsePostmaster(c.in)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("ParsePostmaster(%q) = %+v, %v; want %+v, error %v", c.in, got, err, c.want, c.wantErr)
		}
	}
}

func TestParseControlData(t *testing.T) {
	m := ParseControlData("pg_control version number:            1300\nLatest checkpoint location:           0/3000028\nDatabase cluster state:               shut down in recovery\nno colon here\n")
	if m["Latest checkpoint location"] != "0/3000028" || m["Database cluster state"] != "shut down in recovery" || len(m) != 3 {
		t.Errorf("ParseControlData: %v", m)
	}
}

// TestStarting: a postmaster accepts no connection while its status line
// says starting or is not written yet; every other status is past that.
func TestStarting(t *testing.T) {
	for status, want := range map[string]bool{"": true, PMStarting: true, PMReady: false, PMStandby: false, PMStopping: false} {
		if got := Starting(status); got != want {
			t.Errorf("Starting(%q) = %v, want %v", status, got, want)
		}
	}
}
