// Package pgdata holds what both runtimes read and name around a
// PostgreSQL data directory, as pure functions: pgha's marker file, the
// names of set-aside directories, pg_controldata's output and
// postmaster.pid. The local provider applies them to this host's file
// system, the docker provider inside a container; keeping them here keeps
// the two runtimes' answers the same.
package pgdata

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgha/pgha/internal/pgconf"
)

// MarkerFile is the file pgha writes into every data directory it
// initialises (initdb) or fills (a clone, a restore). pgha deletes a data
// directory only when it carries this file for the same cluster: a
// mistyped data_dir, another cluster's directory or someone's files are
// never removed.
//
// pg_basebackup and pg_rewind copy the file from their source, so its
// node line may name the source until pgha writes it again; the check
// therefore compares the cluster only.
//
// Directories made by pgha before the marker existed are recognised by
// what pgha always wrote into them: PG_VERSION beside a pgha.conf that
// starts with pgha's header (Header). Such a directory gets the marker
// the next time pgha initialises, clones or rewinds it.
const MarkerFile = "pgha.marker"

// Header is the first line of every file pgha rewrites (pgconf.Header
// without its newline): a pgha.conf starting with it was written by pgha.
var Header = strings.TrimSuffix(pgconf.Header, "\n")

// Marker is what MarkerFile records.
type Marker struct {
	Cluster string
	Node    string
}

// Text is the content of MarkerFile for m. Names with a line break are
// refused: they would forge another line.
func (m Marker) Text() ([]byte, error) {
	if strings.ContainsAny(m.Cluster+m.Node, "\r\n") {
		return nil, fmt.Errorf("a name contains a line break")
	}
	return []byte(fmt.Sprintf("%s# pgha deletes this directory only while this file names its cluster.\ncluster = %s\nnode = %s\n",
		pgconf.Header, m.Cluster, m.Node)), nil
}

// ParseMarker reads MarkerFile's content; a marker naming no cluster is
// an error.
func ParseMarker(content string) (Marker, error) {
	var m Marker
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), " = ")
		switch {
		case !found:
		case k == "cluster":
			m.Cluster = v
		case k == "node":
			m.Node = v
		}
	}
	if err := sc.Err(); err != nil {
		return Marker{}, err
	}
	if m.Cluster == "" {
		return Marker{}, fmt.Errorf("%s names no cluster", MarkerFile)
	}
	return m, nil
}

// AsideMarkers are the infixes of a node's set-aside data directories,
// siblings of the data directory: <data_dir>.aside-<UTC stamp> (a
// re-clone) and <data_dir>.before-restore-<UTC stamp> (pgha restore -node).
// Replacing a data directory renames it on the same filesystem, which is
// instant and loses nothing; only a later plan action (data.remove) deletes
// what was set aside, and only a directory whose name says it was.
var AsideMarkers = []string{".aside-", ".before-restore-"}

// AsidePath is where a re-clone moves dir at stamp.
func AsidePath(dir, stamp string) string { return dir + AsideMarkers[0] + stamp }

// BeforeRestorePath is where pgha restore -node moves dir at stamp.
func BeforeRestorePath(dir, stamp string) string { return dir + AsideMarkers[1] + stamp }

// IsAsideOf reports whether path is one of dir's set-aside directories by
// name: dir plus a marker plus a stamp without a path separator.
func IsAsideOf(dir, path string) bool {
	for _, m := range AsideMarkers {
		if rest, ok := strings.CutPrefix(path, dir+m); ok && rest != "" && !strings.ContainsRune(rest, '/') && rest != "." && rest != ".." {
			return true
		}
	}
	return false
}

// ParseControlData reads pg_controldata's "name: value" lines (run with
// LC_ALL=C: the names are translated otherwise).
func ParseControlData(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// Postmaster is what postmaster.pid says of a running (or crashed)
// server: its first line is the postmaster's pid, its fourth the port,
// its eighth the server's status (PMStarting and the others).
type Postmaster struct {
	PID    int    // 0 when the first line is no pid (a server writing the file this instant)
	Port   int    // 0 when the file has no port line yet
	Status string // "" when the file has no status line yet
}

// The status line of postmaster.pid (PostgreSQL's pidfile.h), which
// pg_ctl -w reads too. A server whose status is PMStarting accepts no
// connection: its startup process has not finished crash recovery (for a
// crashed primary, the fsync of the whole data directory comes first,
// seconds on a busy host) or, as a standby, has not reached a consistent
// state. pg_control still says "in production" then if the server
// crashed as a primary.
const (
	PMStarting = "starting"
	PMStopping = "stopping"
	PMReady    = "ready"   // accepts connections: a primary, or a hot standby
	PMStandby  = "standby" // a consistent standby with hot_standby = off
)

// Starting reports whether a running postmaster whose postmaster.pid
// says status has yet to accept a connection: the status line says so,
// or is not written yet (the postmaster writes it after it has opened
// its sockets, as pg_ctl -w knows).
func Starting(status string) bool { return status == "" || status == PMStarting }

// ParsePostmaster reads postmaster.pid's content. An error says the
// first line is something other than a pid; an empty file is no error
// (a postmaster is writing it, or died doing so).
func ParsePostmaster(content string) (Postmaster, error) {
	var p Postmaster
	if content == "" {
		return p, nil
	}
	lines := strings.Split(content, "\n")
	if len(lines) >= 4 {
		p.Port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	if len(lines) >= 8 {
		p.Status = strings.TrimSpace(lines[7])
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return p, fmt.Errorf("first line %q is not a process id", lines[0])
	}
	p.PID = pid
	return p, nil
}
