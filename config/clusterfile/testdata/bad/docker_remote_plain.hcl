cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  runtime "docker" {
    host = "tcp://10.0.0.5:2375"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
