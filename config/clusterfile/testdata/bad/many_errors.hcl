# Every problem is reported in one pass, in file order.
cluster "x" {
  primary = "db9"
  postgres {
    password = ""
  }
  node "db1" {
    port = 0
  }
  node "db2" {
    port = 5442
    slot = "A"
  }
  node "db2" {
    port = 5443
  }
  replication {
    user = "not ok"
  }
  failover {
    check_interval    = "soon"
    maximum_lag       = "lots"
    failure_threshold = 0
    failback          = "never"
  }
  catalog "redis" {
    address = "127.0.0.1:5442"
  }
}
