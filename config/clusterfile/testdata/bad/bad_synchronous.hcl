cluster "sync" {
  primary = "db1"
  postgres {
    password   = "p"
    parameters = { synchronous_standby_names = "*" }
  }
  replication {
    password = "r"
    synchronous {
      standbys = 2
      mode     = "any"
      strict   = "yes"
      quorum   = 1
    }
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
  }
}
