# Values from env() may be secrets: no diagnostic repeats them.
cluster "x" {
  primary = env("T_SUPER")
  postgres {
    password = env("T_SUPER")
  }
  node "db1" {
    port = env("T_PORT", "5441")
    slot = env("T_SUPER")
  }
  node "db2" {
    host = env("T_PORT", "localhost")
    port = 5441
  }
  node "db3" {
    port = env("T_REDIS")
    slot = env("T_SUPER")
  }
  replication {
    password = env("T_SUPER")
  }
  failover {
    check_interval = env("T_SUPER")
    maximum_lag    = env("T_SUPER")
    failback       = env("T_SUPER")
  }
  catalog "redis" {
    address = env("T_REDIS")
  }
}
