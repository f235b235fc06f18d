cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  runtime "docker" {
    host         = "ssh://me@docker1"
    ca_file      = "ca.pem"
    insecure_tcp = true
    bind         = "docker1"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
