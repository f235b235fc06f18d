// Package proc reads the Linux process table (/proc/PID/stat): whether a
// process is alive or a zombie, its parent, its start time, its
// descendants. pgha tells a live lock holder or postmaster from a pid that
// is gone, reused or a zombie under a parent that does not reap; the
// tests and the bench find and kill process trees with it.
package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is what pgha reads of one /proc/PID/stat line.
type Stat struct {
	PID  int
	Comm string // the command name, at most 15 bytes, as the kernel keeps it
	// State is R, S, D, T, t, Z, X...: Z a zombie (exited, not reaped),
	// X dead.
	State byte
	PPID  int
	// StartTime is when the process started, in clock ticks since boot:
	// with the pid it names one process across pid reuse.
	StartTime uint64
}

// Exited reports whether the process has exited, reaped or not.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// ErrMalformed says that a stat line could not be parsed.
var ErrMalformed = errors.New("malformed /proc stat line")

// Parse reads one /proc/PID/stat line. The command name is in
// parentheses and may itself hold spaces and ")", so the fields are
// counted from the last ')'.
func Parse(line string) (Stat, error) {
	open, close := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 1 || close < open {
		return Stat{}, fmt.Errorf("%w: %q", ErrMalformed, line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return Stat{}, fmt.Errorf("%w: pid in %q", ErrMalformed, line)
	}
	f := strings.Fields(line[close+1:])
	// f[0] state, f[1] ppid ... f[19] starttime (field 22 of proc(5)).
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("%w: %q", ErrMalformed, line)
	}
	s := Stat{PID: pid, Comm: line[open+1 : close], State: f[0][0]}
	if s.PPID, err = strconv.Atoi(f[1]); err != nil {
		return Stat{}, fmt.Errorf("%w: ppid in %q", ErrMalformed, line)
	}
	if s.StartTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("%w: starttime in %q", ErrMalformed, line)
	}
	return s, nil
}

// Read reads the stat of one process. An error matching os.ErrNotExist
// means there is no such process (or no /proc).
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return Parse(string(b))
}

// All reads every process in the table; processes that exit while it
// reads are left out.
func All() []Stat {
	ents, _ := os.ReadDir("/proc")
	out := make([]Stat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := Read(pid); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// Children lists the processes whose parent is pid.
func Children(pid int) []int {
	var out []int
	for _, s := range All() {
		if s.PPID == pid {
			out = append(out, s.PID)
		}
	}
	return out
}

// Tree lists roots and all their descendants, read from one snapshot of
// the table, so that a process re-parented when its parent dies is not
// missed by a caller killing the tree. Pids <= 1 are never included.
func Tree(roots ...int) []int {
	children := map[int][]int{}
	for _, s := range All() {
		children[s.PPID] = append(children[s.PPID], s.PID)
	}
	seen := map[int]bool{}
	var all []int
	var walk func(int)
	walk = func(pid int) {
		if pid <= 1 || seen[pid] {
			return
		}
		seen[pid] = true
		all = append(all, pid)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return all
}
