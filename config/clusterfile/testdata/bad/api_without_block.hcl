cluster "served" {
  primary = "db1"
  postgres {
    password = "p"
  }
  replication {
    password = "r"
  }
  node "db1" {
    port        = 5441
    health_port = 8008
  }
}
