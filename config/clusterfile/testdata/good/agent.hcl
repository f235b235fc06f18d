# Every node's host runs `pgha agent`: an isolated primary stops itself
# within self_fence of losing the catalog.
cluster "fenced" {
  primary = "db1"
  postgres {
    password = "p"
  }
  replication {
    password = "r"
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
  }
  catalog "redis" {
    address = "127.0.0.1:6390"
  }
  failover {
    check_interval = "500ms"
  }
  agent {
    self_fence = "4s"
  }
}
