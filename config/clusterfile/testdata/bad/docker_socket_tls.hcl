cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  runtime "docker" {
    host      = "unix:///var/run/docker.sock"
    ca_file   = "ca.pem"
    cert_file = "cert.pem"
    key_file  = "key.pem"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
