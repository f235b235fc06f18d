cluster "imdb" {
  primary = "db1"

  postgres {
    version    = 15
    superuser  = "admin"
    password   = env("T_SUPER")
    parameters = { wal_keep_size = "512MB", max_wal_senders = 10, hot_standby = true, random_page_cost = 1.1 }
  }

  runtime "local" {
    data_dir = "./pgdata"
    bin_dir  = "/usr/lib/postgresql/15/bin"
    run_as   = "postgres"
  }

  node "db1" {
    port = 5441
  }

  node "db2" {
    host       = "127.0.0.1"
    port       = env("T_PORT", "5442")
    slot       = "replication_slot"
    parameters = { work_mem = "8MB" }
  }

  node "db3" {
    port            = 5443
    slot            = "db3_slot"
    prevent_destroy = true
  }

  replication {
    user     = "replicator"
    password = file("repl.secret")
  }

  failover {
    automatic         = true
    check_interval    = "500ms"
    failure_threshold = 5
    maximum_lag       = "32MB"
    failback          = "automatic"
  }

  catalog "redis" {
    address  = "127.0.0.1:6390"
    password = env("T_REDIS", "")
    db       = 2
    managed  = true
  }
}
