# The classic two-node setup pgha replaces: a master and a slave streaming
# through the slot "replication_slot" as user "replicator", with Redis for
# metadata. The scripts (failover.sh, failback.sh, a backup script per weekday,
# check_redis.sh) become `pgha plan` / `pgha apply`.
#
#   export PGHA_SUPERUSER_PASSWORD=... PGHA_REPLICATION_PASSWORD=...
#   pgha apply -f examples/two-node/cluster.hcl

cluster "classic" {
  primary = "db-master"

  postgres {
    superuser = "postgres"
    password  = env("PGHA_SUPERUSER_PASSWORD")
    parameters = {
      wal_keep_size   = "512MB"
      max_wal_senders = 10
    }
  }

  runtime "local" {
    data_dir = "./data"
  }

  node "db-master" {
    port = 5451
  }

  node "db-slave" {
    port = 5452
    slot = "replication_slot"
  }

  replication {
    user     = "replicator"
    password = env("PGHA_REPLICATION_PASSWORD")
  }

  catalog "redis" {
    address  = "127.0.0.1:6391"
    password = env("PGHA_REDIS_PASSWORD", "") # unset: pgha generates one into .secrets/catalog
    managed  = true
  }

  # Replaces backup_monday.sh ... backup_saturday.sh and their Redis keys:
  # the defaults are that week (full Monday, incremental Tue/Thu/Sat,
  # differential Wed/Fri, 02:00) and six days of retention.
  backup {
    repository = "./backups"
  }
}
