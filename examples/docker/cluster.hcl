# The same cluster as containers: a primary, a standby and the Redis
# catalog, each in its own container on a network pgha creates, driven
# through the Docker Engine API (DOCKER_HOST, or the local socket).
#
#   export PGHA_SUPERUSER_PASSWORD=... PGHA_REPLICATION_PASSWORD=...
#   pgha apply -f examples/docker/cluster.hcl
#
# Official images are the default. pgha runs initdb, pg_basebackup and
# pg_ctl inside the containers itself, so any image with the PostgreSQL
# server binaries works. Where no registry is reachable (as in this
# project's tests), build a local image with `make image` and point at it:
#   PGHA_IMAGE=pgha-test/postgres:17 PGHA_REDIS_IMAGE=pgha-test/postgres:17

cluster "dockerdemo" {
  primary = "db1"

  postgres {
    password = env("PGHA_SUPERUSER_PASSWORD")
    parameters = {
      wal_keep_size = "256MB"
    }
  }

  runtime "docker" {
    image       = env("PGHA_IMAGE", "postgres:17")
    redis_image = env("PGHA_REDIS_IMAGE", "redis:7")
    network     = "pgha-dockerdemo"
    bind        = "127.0.0.1"
  }

  node "db1" {
    port = 5461
    slot = "db1"
  }

  node "db2" {
    port = 5462
    slot = "db2"
  }

  replication {
    password = env("PGHA_REPLICATION_PASSWORD")
  }

  catalog "redis" {
    address = "127.0.0.1:6392"
    managed = true
  }

  # On PostgreSQL 17 incrementals are block-level: pgha turns on
  # summarize_wal and restores chains with the image's pg_combinebackup.
  backup {
    repository  = "./backups"
    compression = "zstd"
  }
}
