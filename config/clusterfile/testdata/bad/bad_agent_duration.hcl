cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
  catalog "redis" {
    address = "127.0.0.1:6390"
  }
  agent {
    self_fence = "soon"
  }
}
