cluster "x" {
  primary = "db9"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
  }
  replication {
    password = "r"
  }
}
