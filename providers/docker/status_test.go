package docker

import "testing"

// TestParseStatus: statusScript's words count only as whole lines, so a
// postmaster.pid status "standby" (hot_standby = off) or a set-aside
// directory's path is never read as standby.signal.
func TestParseStatus(t *testing.T) {
	for _, c := range []struct {
		name, out string
		want      status
	}{
		{"nothing", "", status{}},
		{"stopped standby", "initialized\nstandby\n", status{initialized: true, standby: true}},
		{"running primary", "initialized\nrunning\npm_status ready   \n", status{initialized: true, running: true, pmStatus: "ready"}},
		{"starting with standby.signal", "initialized\nstandby\nrunning\npm_status starting\n", status{initialized: true, standby: true, running: true, pmStatus: "starting"}},
		{"primary whose status says standby", "initialized\nrunning\npm_status standby\n", status{initialized: true, running: true, pmStatus: "standby"}},
		{"pid file without a status line yet", "initialized\nrunning\npm_status \n", status{initialized: true, running: true}},
		{"aside paths name no fact", "initialized\naside 12 /var/lib/postgresql/data.aside-standby-running 1 0\n", status{initialized: true}},
	} {
		if got := parseStatus(c.out); got != c.want {
			t.Errorf("%s: parseStatus(%q) = %+v, want %+v", c.name, c.out, got, c.want)
		}
	}
}
