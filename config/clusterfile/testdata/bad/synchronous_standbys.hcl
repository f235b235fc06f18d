cluster "sync" {
  primary = "db1"
  postgres {
    password = "p"
  }
  replication {
    password = "r"
    synchronous {
      standbys = 0
    }
    synchronous {
      strict = true
    }
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
}
