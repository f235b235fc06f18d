cluster "x" {
  primary = "db1"
  postgres {
    password = file("no-such.secret")
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
