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
  authority "etcd" {
    endpoints = ["http://10.0.0.1:2379", "http://10.0.0.1:2379"]
    ca_file   = "ca.pem"
  }
}
