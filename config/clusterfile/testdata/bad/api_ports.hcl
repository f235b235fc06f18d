# health_port without the api block is reported at the node, two
# listeners on one port at the second, the token empty at itself.
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
    health_port = 8088
  }
  node "db2" {
    port        = 5442
    health_port = 70000
  }
  api {
    listen = "localhost"
    token  = ""
  }
}
