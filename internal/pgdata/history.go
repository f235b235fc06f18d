package pgdata

import (
	"strconv"
	"strings"

	"github.com/pgha/pgha/state"
)

// ParseHistory reads a timeline history file: one line per ancestor
// timeline, "<parent tli>\t<switch LSN>\t<reason>".
func ParseHistory(s string) []state.TimelineSwitch {
	var out []state.TimelineSwitch
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		tli, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		l, err := state.ParseLSN(f[1])
		if err != nil {
			continue
		}
		out = append(out, state.TimelineSwitch{Parent: tli, SwitchLSN: l})
	}
	return out
}
