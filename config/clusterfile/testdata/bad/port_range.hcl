cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 70000
  }
  replication {
    password = "r"
  }
}
