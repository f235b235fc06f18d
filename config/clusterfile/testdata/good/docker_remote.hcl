# Nodes on a Docker engine on another host, reached over TCP with mutual
# TLS (dockerd --tlsverify); the files are Docker's ca.pem, cert.pem and
# key.pem. bind defaults to the engine's address: the nodes' ports are
# published there and pgha connects to them there. The managed catalog
# runs on that host too.
cluster "remote" {
  primary = "db1"
  postgres {
    password = "p"
  }
  runtime "docker" {
    host      = "tcp://10.0.0.5:2376"
    ca_file   = "./docker-certs/ca.pem"
    cert_file = "./docker-certs/cert.pem"
    key_file  = "./docker-certs/key.pem"
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
  }
  replication {
    password = "r"
  }
  catalog "redis" {
    address = "10.0.0.5:6390"
    managed = true
  }
}
