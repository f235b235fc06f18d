cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  replication {
    password = "r"
  }
}
