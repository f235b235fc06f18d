cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
    shared_bufers = "1GB"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
