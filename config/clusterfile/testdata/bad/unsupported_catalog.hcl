cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
  catalog "etcd" {
    address = "127.0.0.1:2379"
  }
}
