cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  nodes "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
