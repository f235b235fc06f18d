package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/state"
)

// The observation queries go out as one batch: with the simple protocol
// that is a single round trip, which keeps `pgha plan` fast.
const (
	qIdentity = `SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),
  (pg_control_system()).system_identifier::text,
  CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_lsn()::text END,
  COALESCE(pg_last_wal_receive_lsn()::text, ''), COALESCE(pg_last_wal_replay_lsn()::text, ''),
  CASE WHEN pg_is_in_recovery()
       THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (pg_control_checkpoint()).timeline_id)
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8`
	qReceiver = `SELECT COALESCE(status, ''), COALESCE(sender_host, ''), COALESCE(sender_port, 0), COALESCE(slot_name, '')
  FROM pg_stat_wal_receiver`
	qSlots = `SELECT slot_name, slot_type, active, COALESCE(active_pid, 0), COALESCE(restart_lsn::text, '')
  FROM pg_replication_slots ORDER BY slot_name`
	qReplicas = `SELECT COALESCE(application_name, ''), COALESCE(host(client_addr), ''), COALESCE(state, ''),
  COALESCE(sent_lsn::text, ''), COALESCE(replay_lsn::text, ''), COALESCE(EXTRACT(EPOCH FROM replay_lag), 0)::float8,
  COALESCE(sync_state, '') FROM pg_stat_replication ORDER BY application_name`
	qSettings = `SELECT name, COALESCE(setting, ''), COALESCE(unit, ''), context, vartype, pending_restart, source FROM pg_settings`
	qRoles    = `SELECT rolname, rolcanlogin, rolreplication, rolsuper, COALESCE(rolpassword, '') FROM pg_authid WHERE rolname = ANY($1)`
)

// Observe fills the PostgreSQL facts of n. It never fails: a server that
// cannot be reached or queried is recorded as such (Reachable=false, Error).
//
// roles maps role names to the desired password; a non-empty password is
// compared with the stored SCRAM verifier locally, so it is never sent.
func Observe(ctx context.Context, ep Endpoint, n *state.Node, roles map[string]string) {
	conn, err := connect(ctx, ep)
	if err != nil {
		n.Reachable, n.Error = false, err.Error()
		return
	}
	defer conn.Close(context.Background())
	if err := observe(ctx, conn, n, roles); err != nil {
		n.Reachable, n.Error = false, "query "+ep.String()+": "+err.Error()
		return
	}
	n.Reachable, n.Error = true, ""
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
	br := conn.SendBatch(ctx, b)
	defer br.Close()

	var cur, recv, replay string
	var age float64
	if err := br.QueryRow().Scan(&n.ServerVersion, &n.InRecovery, &n.SystemID, &cur, &recv, &replay, &n.Timeline, &age); err != nil {
		return err
	}
	n.CurrentLSN, n.ReceiveLSN, n.ReplayLSN = lsn(cur), lsn(recv), lsn(replay)
	n.ReplayAge = time.Duration(age * float64(time.Second))

	rows, err := br.Query()
	if err != nil {
		return err
	}
	n.Upstream = nil
	for rows.Next() {
		u := &state.Upstream{}
		if err := rows.Scan(&u.Status, &u.Host, &u.Port, &u.Slot); err != nil {
			return err
		}
		n.Upstream = u
	}
	if err := rows.Err(); err != nil {
		return err
	}

	if rows, err = br.Query(); err != nil {
		return err
	}
	n.Slots = nil
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
	n.Replicas = nil
	for rows.Next() {
		var r state.Replica
		var sent, rep string
		var lag float64
		if err := rows.Scan(&r.ApplicationName, &r.ClientAddr, &r.State, &sent, &rep, &lag, &r.SyncState); err != nil {
			return err
		}
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
	return rows.Err()
}

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

// redactConninfo hides a password written into primary_conninfo by hand
// (pgha itself uses a passfile), so it cannot reach a plan or a log.
func redactConninfo(s string) string {
	fields := strings.Fields(s)
	for i, f := range fields {
		if strings.HasPrefix(f, "password=") {
			fields[i] = "password=(sensitive)"
		}
	}
	if len(fields) == 0 {
		return s
	}
	return strings.Join(fields, " ")
}
