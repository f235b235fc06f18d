cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
    slot = "standby"
  }
  node "db3" {
    port = 5443
    slot = "standby"
  }
  replication {
    password = "r"
  }
}
