cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  node "db1" {
    port = 5442
  }
  replication {
    password = "r"
  }
}
