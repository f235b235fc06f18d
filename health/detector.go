// Package health decides, one check at a time, whether the primary is
// healthy, suspect or lost. It is pure: the watcher observes (PostgreSQL,
// the runtime, a heartbeat write) and feeds each check's Observation to a
// Detector, which keeps only a count and returns a Verdict. Nothing here
// touches the network, the disk or the clock, so every rule is a table
// test.
//
// The rules, and why:
//
//   - A check fails when pgha cannot reach the primary, when the write
//     probe (a heartbeat row, committed under a timeout) fails, or when the
//     runtime says the server process is gone. A reachable primary whose
//     writes hang (a lock, a full disk, a synchronous commit waiting for a
//     standby that is gone) is not healthy: "it answers SELECT 1" is how
//     wedged primaries stay reported healthy for hours.
//   - One success resets the count: the primary is lost only after
//     Threshold consecutive failed checks. A primary that flaps (fails,
//     recovers, fails) stays Suspect and is never failed over: each
//     success proves it was serving.
//   - Lost also needs the standbys to confirm: none of the reachable
//     standbys may still be streaming from the primary with a message
//     newer than StaleAfter. pgha's own path to the primary can fail while
//     the primary serves its clients and standbys; a blip between pgha and
//     the primary alone must fail nothing over. The standbys hear WAL every
//     check (the heartbeat writes some), so on a live primary their last
//     message is younger than an interval; paused, cut off or wedged, it
//     ages past StaleAfter. The same rule lets a busy primary whose
//     heartbeat times out under load live on: its clients' WAL still
//     reaches the standbys. On an idle primary that pgha cannot reach,
//     its heartbeat makes no WAL either, and the standbys hear only the
//     WAL sender's keepalives: at PostgreSQL's defaults one every 10 s
//     or so, too rare to deny anything; with wal_receiver_timeout = 3 ×
//     check_interval on the standbys (their receivers then ask for one
//     after 1.5 intervals of silence) never more than 1.5 s apart
//     (measured at 1 s), and the denial holds. Every watcher heartbeating
//     (not only the leader) helps the same way.
//   - With no standby at all there is nobody to ask; Lost says so. With
//     standbys that pgha cannot reach either, pgha is more likely the one
//     cut off, and nothing could be promoted anyway: Suspect, saying so.
//   - A read-only primary (default_transaction_read_only, or back in
//     recovery) answers and says why it refuses writes. That is a failed
//     check, reported, but never Lost: failing over cannot fix a setting
//     (ALTER DATABASE ... SET replicates to the new primary, which would
//     then fail over again), and a primary in recovery is a role change
//     the planner sees and explains.
//   - ProcessDead: the runtime answers (the local process table, the
//     container engine) and says the postmaster is gone, and pgha cannot
//     reach the server. That is first-hand, not a view across a network,
//     so it is Lost at the first check that sees it, with ProcessDead set.
//     Restarting in place (primary_crash = "restart", the default) is safe
//     at once: crash recovery keeps every committed transaction, and a
//     server that was in fact running refuses a second start (its
//     postmaster.pid). Failing over is not undone, so even then a standby
//     still streaming fresh WAL from the "dead" primary vetoes it: the
//     runtime and the standbys disagree, and the verdict stays Suspect
//     until they agree (the WAL senders die with the postmaster, so after
//     a real crash the standbys agree within milliseconds).
//   - A change of primary (a failover done, an edit of cluster.hcl)
//     starts counting afresh: failures of the old primary say nothing of
//     the new one.
//
// Detection time at the defaults (check_interval 1s, failure_threshold 3,
// StaleAfter 2s): a crashed server process is Lost at the first check
// after the crash, 0 to 1 s later (0.5 s on average) plus the check
// itself; an unreachable or wedged primary at the third failed check, 2 to
// 3 s after it stopped answering (the first failure comes 0 to 1 s after,
// then two intervals), by which time the standbys have heard nothing for
// about StaleAfter (if not, the next check). BenchmarkDetection in
// providers/postgres measures it: kill -9 of the postmaster lost at the
// next check, every process of the primary paused (SIGSTOP) lost 2.8 s
// later, and 120 s of pgbench at full CPU on both cores (8 clients) with
// no check even suspect (slowest heartbeat 57 ms, oldest standby message
// 27 ms; 205 ms and 94 ms at worst over three runs).
package health

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Config tunes the detector.
type Config struct {
	// Threshold is how many consecutive failed checks make the primary
	// lost (failover.failure_threshold); at least 1.
	Threshold int
	// Interval is the time between checks (failover.check_interval). The
	// detector reads no clock; the interval only sets StaleAfter's
	// default.
	Interval time.Duration
	// StaleAfter is how old a standby's last message from the primary may
	// be for the standby to count as still hearing it. Zero: 2 × Interval
	// (the heartbeat makes WAL every interval, so a live primary's
	// standbys never wait two), at least 1 s.
	StaleAfter time.Duration
}

// DefaultStaleAfter is StaleAfter's default for a check interval.
func DefaultStaleAfter(interval time.Duration) time.Duration {
	return max(2*interval, time.Second)
}

func (c Config) normal() Config {
	if c.Threshold < 1 {
		c.Threshold = 1
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = DefaultStaleAfter(c.Interval)
	}
	return c
}

// Observation is what one check saw of the primary and its standbys.
type Observation struct {
	// Primary is the node pgha holds as primary.
	Primary string
	// Reachable: pgha connected and queried it.
	Reachable bool
	// Error says why it was not reachable (for reasons).
	Error string
	// Probe is the write probe's error; nil when the heartbeat committed.
	// An error with a ReadOnly() bool method that returns true (the
	// postgres provider's ReadOnlyError) is a server that refuses writes
	// by its own state.
	Probe error
	// ProcessDead: the runtime answered and says the server process is
	// gone (no postmaster; the container stopped or removed).
	ProcessDead bool
	// Standbys are the other declared nodes.
	Standbys []Standby
}

// Standby is what one other node said of the primary.
type Standby struct {
	Name string
	// Reachable: pgha queried it and it is in recovery. Anything else
	// (down, or itself a primary) can neither confirm nor deny.
	Reachable bool
	// Streaming: its WAL receiver is streaming from the primary.
	Streaming bool
	// LastMessageAge is how long ago its receiver last heard from its
	// sender (state.Upstream.LastMessageAge).
	LastMessageAge time.Duration
	// Receiver says, for reasons, what its WAL receiver does when it is
	// not streaming from the primary ("no WAL receiver", "streaming from
	// db3:5432", "waiting").
	Receiver string
}

// Status is the detector's verdict on the primary.
type Status int

const (
	Healthy Status = iota
	Suspect        // failed checks, not (yet) lost
	Lost           // the watcher may act (policy permitting)
)

func (s Status) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Suspect:
		return "suspect"
	case Lost:
		return "lost"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Verdict is the detector's answer to one observation.
type Verdict struct {
	Status  Status
	Primary string
	// Failures is the number of consecutive failed checks, this one
	// included; Threshold the number that makes the primary lost.
	Failures, Threshold int
	// Reason is a sentence a person can check: what failed, and for
	// Suspect why it is not lost (yet); "" when Healthy.
	Reason string
	// ProcessDead: Lost because the runtime says the server process is
	// gone while the runtime itself answers: restart in place is possible.
	ProcessDead bool
	// ReadOnly: the check failed because the primary refuses writes by
	// its own state; never Lost for that alone.
	ReadOnly bool
	// Confirmed are the standbys that no longer hear the primary (Lost
	// and Suspect), in name order.
	Confirmed []string
}

// Detector counts a primary's consecutive failed checks. Not safe for
// concurrent use: the watcher's loop owns it.
type Detector struct {
	cfg      Config
	primary  string
	failures int
}

// New returns a detector with no failures counted.
func New(cfg Config) *Detector { return &Detector{cfg: cfg.normal()} }

// Config returns the detector's configuration, defaults filled in.
func (d *Detector) Config() Config { return d.cfg }

// Reset forgets the failures counted (after a role change pgha made, or
// a new configuration).
func (d *Detector) Reset() { d.primary, d.failures = "", 0 }

// Update takes one check's observation and returns the verdict.
func (d *Detector) Update(obs Observation) Verdict {
	if obs.Primary != d.primary {
		d.primary, d.failures = obs.Primary, 0
	}
	v := Verdict{Primary: obs.Primary, Threshold: d.cfg.Threshold}
	failure, readOnly := d.failure(obs)
	if failure == "" {
		d.failures = 0
		v.Status = Healthy
		return v
	}
	d.failures++
	v.Failures, v.ReadOnly = d.failures, readOnly

	dead := obs.ProcessDead && !obs.Reachable
	deny, confirmed, unreachable := d.standbys(obs)
	v.Confirmed = confirmed
	switch {
	case readOnly:
		v.Status, v.Reason = Suspect, failure+"; the primary answers and refuses writes by its own state, which failing over would not fix: left to a person"
	case len(deny) > 0 && dead:
		v.Status, v.Reason = Suspect, fmt.Sprintf("the runtime says %s's server process is gone, but %s: the two disagree, not lost until they agree",
			obs.Primary, strings.Join(deny, "; "))
	case len(deny) > 0:
		v.Status, v.Reason = Suspect, fmt.Sprintf("%s (check %d of %d), but %s: not lost while a standby hears it",
			failure, d.failures, d.cfg.Threshold, strings.Join(deny, "; "))
	case dead:
		v.Status, v.ProcessDead = Lost, true
		v.Reason = failure + confirmation(obs, confirmed)
	case d.failures < d.cfg.Threshold:
		v.Status, v.Reason = Suspect, fmt.Sprintf("%s (check %d of %d)", failure, d.failures, d.cfg.Threshold)
	case len(obs.Standbys) > 0 && len(confirmed) == 0:
		v.Status, v.Reason = Suspect, fmt.Sprintf("%s, %d checks in a row, but no standby can confirm it (%s): pgha may be the one cut off",
			failure, d.failures, strings.Join(unreachable, ", "))
	default:
		v.Status = Lost
		v.Reason = fmt.Sprintf("%s, %d checks in a row%s", failure, d.failures, confirmation(obs, confirmed))
	}
	return v
}

// failure says why the check failed ("" when it did not) and whether
// because the primary is read-only.
func (d *Detector) failure(obs Observation) (string, bool) {
	switch {
	case obs.ProcessDead && !obs.Reachable:
		return fmt.Sprintf("%s's server process is gone (the runtime answers)", obs.Primary), false
	case !obs.Reachable:
		why := obs.Error
		if why == "" {
			why = "no answer"
		}
		return fmt.Sprintf("%s is unreachable: %s", obs.Primary, why), false
	case obs.Probe != nil:
		if isReadOnly(obs.Probe) {
			return fmt.Sprintf("%s is read-only: %v", obs.Primary, obs.Probe), true
		}
		return fmt.Sprintf("%s answers but its write probe failed: %v", obs.Primary, obs.Probe), false
	}
	return "", false
}

// standbys sorts the standbys into those that still hear the primary
// (deny: one reason each), those that confirm it is gone, and those that
// cannot say.
func (d *Detector) standbys(obs Observation) (deny, confirmed, unreachable []string) {
	for _, s := range obs.Standbys {
		switch {
		case !s.Reachable:
			unreachable = append(unreachable, s.Name+" unreachable")
		case s.Streaming && s.LastMessageAge < d.cfg.StaleAfter:
			deny = append(deny, fmt.Sprintf("%s still streams from it (last message %s ago)", s.Name, s.LastMessageAge.Round(time.Millisecond)))
		default:
			confirmed = append(confirmed, s.Name)
		}
	}
	sort.Strings(deny)
	sort.Strings(confirmed)
	sort.Strings(unreachable)
	return deny, confirmed, unreachable
}

// confirmation words who confirmed a loss.
func confirmation(obs Observation, confirmed []string) string {
	switch {
	case len(obs.Standbys) == 0:
		return "; no standby to confirm it (the cluster has none)"
	case len(confirmed) == 0:
		return "; no standby reachable to confirm it"
	}
	var parts []string
	for _, s := range obs.Standbys {
		if !contains(confirmed, s.Name) {
			continue
		}
		if s.Streaming {
			parts = append(parts, fmt.Sprintf("%s heard nothing for %s", s.Name, s.LastMessageAge.Round(time.Millisecond)))
		} else {
			r := s.Receiver
			if r == "" {
				r = "not streaming from it"
			}
			parts = append(parts, s.Name+": "+r)
		}
	}
	sort.Strings(parts)
	return "; confirmed by " + strings.Join(parts, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isReadOnly reports whether err says the server refuses writes by its
// own state: an error in its chain has a ReadOnly() bool method that
// returns true. An interface, so that this package needs no provider.
func isReadOnly(err error) bool {
	var ro interface{ ReadOnly() bool }
	return errors.As(err, &ro) && ro.ReadOnly()
}
