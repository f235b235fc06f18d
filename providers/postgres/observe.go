package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/state"
)

// The observation queries go out as one batch: with the simple protocol
// that is a single round trip, which keeps `pgha plan` fast.
//
// On a primary the timeline comes from the current WAL file name, because
// pg_control_checkpoint() still shows the old one until the first
// checkpoint after a promotion. Receive/replay positions and the replay age
// are standby facts: a promoted server keeps reporting its last values, so
// they are zeroed on a primary.
const (
	// qReplayTLI is the timeline a standby replays: the highest timeline
	// among the WAL segment files in pg_wal for the segment holding the
	// last byte replayed. The startup process reads that segment from
	// the file of the timeline it replays, and it leaves older
	// timelines' files for later segments behind (it removes them at a
	// switch); a newer timeline's file for that segment exists only if
	// the startup process accepted that timeline. pg_control lags: its
	// checkpoint timeline and minimum recovery point timeline change
	// only at the next restartpoint or buffer flush, one or two
	// switchovers later, which made a standby whose WAL receiver was
	// down look as if it had replayed past the primary's fork. NULL
	// when the file is gone (then pg_control is all there is).
	qReplayTLI = `(SELECT max(('x' || substr(w.name, 1, 8))::bit(32)::int)
    FROM pg_ls_waldir() w, (SELECT pg_last_wal_replay_lsn() - '0/1'::pg_lsn AS b,
      (SELECT setting::numeric FROM pg_settings WHERE name = 'wal_segment_size') AS s) r
    WHERE w.name ~ '^[0-9A-F]{24}$' AND substr(w.name, 9) = ` + qSegment + `)`
	// qSegment is a WAL file name without its timeline (PostgreSQL's
	// XLogFileName: log id, then segment within it) for the segment
	// holding byte r.b, r.s being wal_segment_size in bytes.
	// pg_walfile_name() would do, but it refuses to run during recovery.
	qSegment = `lpad(upper(to_hex(div(r.b, 4294967296)::bigint)), 8, '0') ||
      lpad(upper(to_hex(div(mod(r.b, 4294967296), r.s)::bigint)), 8, '0')`
	// qIdentity is who the server is and where it stands, with its
	// timeline computed once (x.t) for the timeline column and for the
	// history file read beside it: the current timeline's history (where
	// each timeline forked from its parent) and, on a primary, the
	// databases' total size, the cost of a re-clone; both for rejoin
	// previews.
	qIdentity = `SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),
  (pg_control_system()).system_identifier::text,
  CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_lsn()::text END,
  CASE WHEN pg_is_in_recovery() THEN COALESCE(pg_last_wal_receive_lsn()::text, '') ELSE '' END,
  CASE WHEN pg_is_in_recovery() THEN COALESCE(pg_last_wal_replay_lsn()::text, '') ELSE '' END,
  x.t,
  CASE WHEN pg_is_in_recovery()
       THEN COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 ELSE 0 END,
  COALESCE(CASE WHEN x.t > 1 THEN pg_read_file('pg_wal/' || lpad(upper(to_hex(x.t)), 8, '0') || '.history', 0, 1048576, true) END, ''),
  CASE WHEN pg_is_in_recovery() THEN 0 ELSE (SELECT sum(pg_database_size(oid))::bigint FROM pg_database) END
  FROM (SELECT CASE WHEN pg_is_in_recovery()
       THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), ` + qReplayTLI + `, (pg_control_checkpoint()).timeline_id)
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS t) x`
	// qReceiver is the standby's WAL receiver; the age of its last
	// message is computed by the standby (now() and last_msg_receipt_time
	// from one clock, never negative: now() is the statement's start, a
	// message may arrive after it), -1 when it has received none.
	qReceiver = `SELECT COALESCE(status, ''), COALESCE(sender_host, ''), COALESCE(sender_port, 0), COALESCE(slot_name, ''),
  COALESCE(GREATEST(EXTRACT(EPOCH FROM now() - last_msg_receipt_time), 0), -1)::float8
  FROM pg_stat_wal_receiver`
	qSlots = `SELECT slot_name, slot_type, active, COALESCE(active_pid, 0), COALESCE(restart_lsn::text, '')
  FROM pg_replication_slots ORDER BY slot_name`
	qReplicas = `SELECT COALESCE(application_name, ''), COALESCE(host(client_addr), ''), COALESCE(state, ''),
  COALESCE(sent_lsn::text, ''), COALESCE(replay_lsn::text, ''), COALESCE(EXTRACT(EPOCH FROM replay_lag), 0)::float8,
  COALESCE(sync_state, ''), COALESCE(sync_priority, 0), COALESCE(flush_lsn::text, ''), pid FROM pg_stat_replication ORDER BY application_name`
	qSettings = `SELECT name, COALESCE(setting, ''), COALESCE(unit, ''), context, vartype, pending_restart, source FROM pg_settings`
	// qHBA counts pg_hba.conf's TCP lines that accept a connection
	// without TLS ("host"; "hostssl" and "hostnossl" say what they take).
	qHBA   = `SELECT count(*) FILTER (WHERE type = 'host')::int FROM pg_hba_file_rules`
	qRoles = `SELECT rolname, rolcanlogin, rolreplication, rolsuper, COALESCE(rolpassword, '') FROM pg_authid WHERE rolname = ANY($1)`
	// qArchiver is the WAL archiver's statistics, with archive_mode.
	qArchiver = `SELECT current_setting('archive_mode'), archived_count, COALESCE(last_archived_wal, ''), last_archived_time,
  failed_count, COALESCE(last_failed_wal, ''), last_failed_time FROM pg_stat_archiver`
)

// Observe fills the PostgreSQL facts of n. It never fails: a server that
// cannot be reached or queried is recorded as such (Reachable=false, Error).
//
// roles maps role names to the desired password; a non-empty password is
// compared with the stored SCRAM verifier locally, so it is never sent.
func Observe(ctx context.Context, ep Endpoint, n *state.Node, roles map[string]string) {
	resetFacts(n)
	conn, secure, err := open(ctx, ep)
	if err != nil {
		n.Error = err.Error()
		return
	}
	defer closeConn(conn)
	if err := observe(ctx, conn, n, roles); err != nil {
		resetFacts(n)
		n.Error = "query " + ep.String() + ": " + err.Error()
		return
	}
	n.Reachable, n.TLSSession = true, secure
}

// resetFacts zeroes the PostgreSQL facts of n (not the runtime ones), so
// that a reused Node never mixes two observations and an unreachable node
// carries no stale values.
func resetFacts(n *state.Node) {
	n.Reachable, n.Error = false, ""
	n.ServerVersion, n.InRecovery, n.SystemID, n.Timeline = 0, false, "", 0
	n.CurrentLSN, n.ReceiveLSN, n.ReplayLSN, n.ReplayAge = 0, 0, 0, 0
	n.Upstream, n.Slots, n.Replicas, n.Settings, n.Roles = nil, nil, nil, nil, nil
	n.HBAPlainTCP, n.TLSSession = 0, false
	n.Archiver = nil
}

func observe(ctx context.Context, conn *pgx.Conn, n *state.Node, roles map[string]string) error {
	names := make([]string, 0, len(roles))
	for r := range roles {
		names = append(names, r)
	}
	b := &pgx.Batch{}
	b.Queue(qIdentity)
	b.Queue(qReceiver)
	b.Queue(qSlots)
	b.Queue(qReplicas)
	b.Queue(qSettings)
	b.Queue(qRoles, names)
	b.Queue(qHBA)
	b.Queue(qArchiver)
	br := conn.SendBatch(ctx, b)
	defer br.Close()

	var cur, recv, replay, history string
	var age float64
	if err := br.QueryRow().Scan(&n.ServerVersion, &n.InRecovery, &n.SystemID, &cur, &recv, &replay, &n.Timeline, &age,
		&history, &n.DatabaseBytes); err != nil {
		return err
	}
	n.History = pgdata.ParseHistory(history)
	n.CurrentLSN, n.ReceiveLSN, n.ReplayLSN = lsn(cur), lsn(recv), lsn(replay)
	n.ReplayAge = time.Duration(age * float64(time.Second))

	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		u := &state.Upstream{}
		var msgAge float64
		if err := rows.Scan(&u.Status, &u.Host, &u.Port, &u.Slot, &msgAge); err != nil {
			return err
		}
		if msgAge >= 0 {
			u.LastMessageAge = time.Duration(msgAge * float64(time.Second))
		}
		n.Upstream = u
	}
	if err := rows.Err(); err != nil {
		return err
	}

	if rows, err = br.Query(); err != nil {
		return err
	}
	for rows.Next() {
		var s state.Slot
		var restart string
		if err := rows.Scan(&s.Name, &s.Type, &s.Active, &s.ActivePID, &restart); err != nil {
			return err
		}
		s.RestartLSN = lsn(restart)
		n.Slots = append(n.Slots, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}

	if rows, err = br.Query(); err != nil {
		return err
	}
	for rows.Next() {
		var r state.Replica
		var sent, rep, flush string
		var lag float64
		if err := rows.Scan(&r.ApplicationName, &r.ClientAddr, &r.State, &sent, &rep, &lag, &r.SyncState, &r.SyncPriority, &flush, &r.PID); err != nil {
			return err
		}
		r.FlushLSN = lsn(flush)
		r.SentLSN, r.ReplayLSN, r.ReplayLag = lsn(sent), lsn(rep), time.Duration(lag*float64(time.Second))
		n.Replicas = append(n.Replicas, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}

	if rows, err = br.Query(); err != nil {
		return err
	}
	n.Settings = make(map[string]state.Setting, 400)
	for rows.Next() {
		var name string
		var s state.Setting
		if err := rows.Scan(&name, &s.Value, &s.Unit, &s.Context, &s.VarType, &s.PendingRestart, &s.Source); err != nil {
			return err
		}
		if name == "primary_conninfo" {
			s.Value = redactConninfo(s.Value)
		}
		n.Settings[name] = s
	}
	if err := rows.Err(); err != nil {
		return err
	}

	if rows, err = br.Query(); err != nil {
		return err
	}
	n.Roles = map[string]state.DBRole{}
	for rows.Next() {
		var name, verifier string
		var r state.DBRole
		if err := rows.Scan(&name, &r.CanLogin, &r.Replication, &r.Superuser, &verifier); err != nil {
			return err
		}
		r.HasPassword = verifier != ""
		if pw := roles[name]; pw != "" {
			r.PasswordMatches = VerifierMatches(verifier, pw)
		}
		n.Roles[name] = r
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := br.QueryRow().Scan(&n.HBAPlainTCP); err != nil {
		return err
	}
	a := &state.Archiver{}
	var archived, failed *time.Time
	if err := br.QueryRow().Scan(&a.Mode, &a.ArchivedCount, &a.LastArchivedWAL, &archived,
		&a.FailedCount, &a.LastFailedWAL, &failed); err != nil {
		return err
	}
	if archived != nil {
		a.LastArchivedTime = archived.UTC()
	}
	if failed != nil {
		a.LastFailedTime = failed.UTC()
	}
	n.Archiver = a
	return nil
}

// ParseHistory reads a timeline history file (see pgdata.ParseHistory,
// where backup reads the WAL archive's with it too).
var ParseHistory = pgdata.ParseHistory

func lsn(s string) state.LSN {
	if s == "" {
		return 0
	}
	l, err := state.ParseLSN(s)
	if err != nil {
		return 0
	}
	return l
}

// redactConninfo hides any password written into primary_conninfo (pgha
// itself uses a passfile), so that it cannot reach a plan, JSON or a log.
// Both libpq forms are handled: keyword/value (values may be quoted, with
// spaces around "=") and URIs (user:password@, ?password=). A value that
// does not parse is hidden whole rather than risk showing a secret.
func redactConninfo(s string) string {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "postgresql://") || strings.HasPrefix(t, "postgres://") {
		return redactURI(t)
	}
	var out []string
	for i := 0; ; {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if key == "" || i == len(s) || s[i] != '=' {
			return "(sensitive)"
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		vstart := i
		if i < len(s) && s[i] == '\'' {
			for i++; i < len(s) && s[i] != '\''; i++ {
				if s[i] == '\\' {
					i++
				}
			}
			if i >= len(s) {
				return "(sensitive)" // unterminated quote
			}
			i++
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
		if i > len(s) {
			i = len(s)
		}
		if key == "password" {
			out = append(out, "password=(sensitive)")
		} else {
			out = append(out, key+"="+s[vstart:i])
		}
	}
	return strings.Join(out, " ")
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// redactURI hides the password of a postgresql:// URI: the one after
// "user:" in the authority and any password= query parameter.
func redactURI(s string) string {
	scheme, rest, _ := strings.Cut(s, "://")
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		if user, _, ok := strings.Cut(authority[:at], ":"); ok {
			authority = user + ":(sensitive)" + authority[at:]
		}
	}
	if path, query, ok := strings.Cut(tail, "?"); ok {
		params := strings.Split(query, "&")
		for i, p := range params {
			if k, _, _ := strings.Cut(p, "="); k == "password" {
				params[i] = "password=(sensitive)"
			}
		}
		tail = path + "?" + strings.Join(params, "&")
	}
	return scheme + "://" + authority + tail
}
