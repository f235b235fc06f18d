package pgdata

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pgha/pgha/state"
)

// ForkScript gathers, for a stopped data directory ($1), what
// FollowsWithoutRewind decides on: pg_controldata's fields, the history
// files in its pg_wal, and, for the (timeline, LSN) pair after $1 whose
// timeline is that of the latest checkpoint, whether pg_waldump finds a
// valid WAL record at or after that LSN on that timeline. It runs as the
// data directory's owner with PostgreSQL's binaries first in PATH, on the
// host or in the node's container alike, so that both runtimes answer the
// same in one process start.
//
// Only that one pair decides (see FollowsWithoutRewind), and pg_waldump
// is not asked about the others: for a segment file that is not there it
// tries ten times, half a second apart, before it says so. Asked about
// every ancestor of a source with a long history, where a rewound node
// keeps none of the old timelines' segments, that was 5 s per timeline:
// a rejoin's fork check took 72-107 s after some 40 failovers (bench
// -chaos, faults #100 and #103 at seed 20261202). The segment file at
// the LSN is looked for first for the same reason; its name is the
// timeline, the LSN's high word and its low word over the segment size.
const ForkScript = `D=$1; shift
C=$(LC_ALL=C pg_controldata -D "$D") || exit 3
printf '%s\n' "$C"
printf 'pgha-history-files:'
for f in "$D"/pg_wal/*.history; do [ -e "$f" ] && printf ' %s' "${f##*/}"; done
echo
T=$(printf '%s\n' "$C" | sed -n "s/^Latest checkpoint's TimeLineID: *//p")
Z=$(printf '%s\n' "$C" | sed -n 's/^Bytes per WAL segment: *//p')
while [ $# -ge 2 ]; do
  if [ "$1" = "$T" ] && [ -n "$Z" ]; then
    f=$(printf '%08X%08X%08X' "$1" "$((0x${2%/*}))" "$((0x${2#*/} / Z))")
    if [ -e "$D/pg_wal/$f" ]; then
      o=$(LC_ALL=C pg_waldump -p "$D/pg_wal" -t "$1" -s "$2" -n 1 2>&1); r=$?
    else
      o="no WAL segment $f in pg_wal"; r=2
    fi
    printf 'pgha-waldump %s %s rc=%s: %s\n' "$1" "$2" "$r" "$(printf '%s\n' "$o" | head -n 1)"
  fi
  shift 2
done`

// ForkProbes are ForkScript's arguments after the data directory: one
// (timeline, switch LSN) pair per ancestor in the source's history.
func ForkProbes(history []state.TimelineSwitch) []string {
	var args []string
	for _, h := range history {
		args = append(args, strconv.Itoa(h.Parent), h.SwitchLSN.String())
	}
	return args
}

// FollowsWithoutRewind decides from ForkScript's output whether a former
// primary can start as a standby of a source on timeline sourceTLI (whose
// history is history) as it is, without pg_rewind: true only when its WAL
// stops at or before the point where the source's history left the
// former primary's timeline, so that it holds nothing the source lacks.
// PostgreSQL then replays its own WAL up to that point and follows the
// source's newer timeline from there. This is the common case of a
// primary that died after its standby had received everything it wrote.
//
// It answers true only when every fact agrees, and says why not
// otherwise (then pg_rewind runs, as before):
//   - the cluster state is "in production": the server crashed or was
//     stopped immediately. A directory that pg_rewind began on is never in
//     that state (pg_rewind first runs crash recovery, which ends in a
//     shutdown checkpoint), so a half-rewound directory is never started;
//   - its latest checkpoint is on a timeline T that the source's history
//     left at a switch point S, and lies before S;
//   - no history file of a timeline after T is in its pg_wal (a promotion
//     after that checkpoint would have put its WAL on a newer timeline);
//   - pg_waldump finds no valid record at or after S on timeline T (it
//     reports "could not find a valid record after S"). Any other answer
//     (a record, a missing file) counts as diverged.
func FollowsWithoutRewind(out string, sourceTLI int, history []state.TimelineSwitch) (bool, string) {
	cd := ParseControlData(out)
	if st := cd["Database cluster state"]; st != "in production" {
		return false, fmt.Sprintf("cluster state %q (only a crashed or immediately stopped former primary is checked)", st)
	}
	tli, err := strconv.Atoi(cd["Latest checkpoint's TimeLineID"])
	if err != nil {
		return false, "no checkpoint timeline in pg_controldata's output"
	}
	ckpt, err := state.ParseLSN(cd["Latest checkpoint location"])
	if err != nil {
		return false, "no checkpoint location in pg_controldata's output"
	}
	if tli >= sourceTLI {
		return false, fmt.Sprintf("its timeline %d is not older than the source's %d", tli, sourceTLI)
	}
	var fork state.LSN
	found := false
	for _, h := range history {
		if h.Parent == tli {
			fork, found = h.SwitchLSN, true
		}
	}
	if !found {
		return false, fmt.Sprintf("the source's history does not contain its timeline %d", tli)
	}
	if ckpt >= fork {
		return false, fmt.Sprintf("its latest checkpoint %s is not before the fork at %s", ckpt, fork)
	}
	probe := fmt.Sprintf("pgha-waldump %d %s ", tli, fork)
	verdict := ""
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "pgha-history-files:"):
			for _, f := range strings.Fields(strings.TrimPrefix(line, "pgha-history-files:")) {
				t, err := strconv.ParseUint(strings.TrimSuffix(f, ".history"), 16, 32)
				if err != nil || int(t) > tli {
					return false, fmt.Sprintf("its pg_wal holds %s, a timeline after its checkpoint's %d", f, tli)
				}
			}
		case strings.HasPrefix(line, probe):
			verdict = strings.TrimPrefix(line, probe)
		}
	}
	switch {
	case verdict == "":
		return false, fmt.Sprintf("no WAL check at %s on timeline %d", fork, tli)
	case strings.HasPrefix(verdict, "rc=0:"):
		return false, fmt.Sprintf("it wrote WAL after the fork at %s on timeline %d", fork, tli)
	case strings.Contains(verdict, "could not find a valid record after "+fork.String()):
		return true, fmt.Sprintf("its WAL ends at or before the fork at %s on timeline %d", fork, tli)
	}
	return false, fmt.Sprintf("WAL at the fork %s on timeline %d unreadable: %s", fork, tli, strings.TrimSpace(verdict))
}

// LastCommonRedo reads from ForkScript's output where the replay of a
// rewound former primary will start: the REDO location of its latest
// checkpoint, when that checkpoint lies on a timeline the source's
// history left, before the fork. pg_rewind starts the rewound node from
// the last checkpoint before the fork (its backup_label), which is this
// one or a later one, so the source must keep its WAL from here on. False
// when the latest checkpoint is not before the fork (then the last common
// one is unknown without reading the WAL backwards, as pg_rewind does).
func LastCommonRedo(out string, sourceTLI int, history []state.TimelineSwitch) (state.LSN, bool) {
	cd := ParseControlData(out)
	tli, err := strconv.Atoi(cd["Latest checkpoint's TimeLineID"])
	if err != nil || tli >= sourceTLI {
		return 0, false
	}
	ckpt, err := state.ParseLSN(cd["Latest checkpoint location"])
	if err != nil {
		return 0, false
	}
	redo, err := state.ParseLSN(cd["Latest checkpoint's REDO location"])
	if err != nil || redo > ckpt {
		return 0, false
	}
	for _, h := range history {
		if h.Parent == tli {
			return redo, ckpt < h.SwitchLSN
		}
	}
	return 0, false
}
