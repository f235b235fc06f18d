cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = "fivefourfourone"
  }
  replication {
    password = "r"
  }
}
