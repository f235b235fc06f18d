cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  runtime "docker" {
    host      = "tcp://10.0.0.5:2376"
    cert_file = "cert.pem"
    key_file  = "key.pem"
    bind      = "127.0.0.1"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
  catalog "redis" {
    address = "127.0.0.1:6390"
    managed = true
  }
}
