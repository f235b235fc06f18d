# The default cluster: three PostgreSQL nodes as local processes on this
# machine, db1 primary, db2 and db3 streaming standbys, and a Redis catalog
# that pgha starts and keeps. `make demo` brings it up.
#
# Passwords are read from files `make secrets` generates (mode 0600, never
# committed); point them at env("...") or your own files for real use.

cluster "demo" {
  primary = "db1"

  postgres {
    superuser = "postgres"
    password  = file("./.secrets/superuser")
    parameters = {
      wal_keep_size   = "256MB"
      max_connections = 100
      shared_buffers  = "128MB"
    }
  }

  runtime "local" {
    data_dir = "./data"
  }

  # health_port: where `pgha watch` answers this node's health checks
  # (/primary, /replica, ...) for a load balancer, as Patroni's REST API
  # does on port 8008 of each node (examples/haproxy.cfg).
  node "db1" {
    port        = 5441
    slot        = "db1"
    health_port = 8008
  }

  node "db2" {
    port        = 5442
    slot        = "db2"
    health_port = 8009
  }

  node "db3" {
    port        = 5443
    slot        = "db3"
    health_port = 8010
  }

  replication {
    user     = "replicator"
    password = file("./.secrets/replication")
  }

  failover {
    maximum_lag = "16MB"
    failback    = "manual"
  }

  # What `pgha watch` serves: status, the pending plan, switchover,
  # failover and failback (these need the token), /events, /metrics and
  # the dashboard at /ui/. HTTPS with the cluster CA, as tls is on.
  api {
    listen = "127.0.0.1:8088"
    token  = file("./.secrets/api")
  }

  catalog "redis" {
    address = "127.0.0.1:6390"
    managed = true
  }

  # Backups are desired state too: `pgha plan` shows the backup that is due
  # and the chains retention lets go; apply takes and expires them.
  backup {
    repository  = "./backups"
    compression = "zstd"

    # The classic week (also the default): full on Monday, incremental
    # (the changes since the newest backup) Tuesday, Thursday and Saturday,
    # differential (the changes since the full) Wednesday and Friday.
    schedule {
      full         = "0 2 * * 1"
      incremental  = "0 2 * * 2,4,6"
      differential = "0 2 * * 3,5"
    }

    # Chains with a backup younger than six days are kept; the newest
    # chain always is.
    retention {
      days = 6
    }
  }
}
