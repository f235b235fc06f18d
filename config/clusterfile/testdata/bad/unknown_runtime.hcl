cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  runtime "kubernetes" {
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
