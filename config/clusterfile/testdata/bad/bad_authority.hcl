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
    endpoints = ["127.0.0.1:2379"]
    password  = "secret"
    ttl       = "1500ms"
    cert_file = "c.pem"
  }
}
