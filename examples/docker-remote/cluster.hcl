# Nodes and the managed catalog on a Docker engine on another host,
# reached over TCP with mutual TLS (README.md, "A Docker engine on another
# host", makes the certificates with Docker's recipe). The engine runs
#   dockerd --tlsverify --tlscacert=ca.pem --tlscert=server-cert.pem \
#     --tlskey=server-key.pem -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2376
# and ./docker-certs on pgha's host holds ca.pem, cert.pem and key.pem, as
# DOCKER_CERT_PATH would.
#
#   export PGHA_SUPERUSER_PASSWORD=... PGHA_REPLICATION_PASSWORD=...
#   pgha apply -f examples/docker-remote/cluster.hcl
#
# Write your engine's address in host and in the catalog's address. The
# nodes' ports are published on the engine's host, at its address (bind
# defaults to the IP in host), and pgha connects to them there.

cluster "remotedemo" {
  primary = "db1"

  postgres {
    password = env("PGHA_SUPERUSER_PASSWORD")
  }

  runtime "docker" {
    image       = env("PGHA_IMAGE", "postgres:17")
    redis_image = env("PGHA_REDIS_IMAGE", "redis:7")
    host        = "tcp://10.0.0.5:2376"
    ca_file     = "./docker-certs/ca.pem"
    cert_file   = "./docker-certs/cert.pem"
    key_file    = "./docker-certs/key.pem"
  }

  node "db1" {
    port = 5471
    slot = "db1"
  }

  node "db2" {
    port = 5472
    slot = "db2"
  }

  node "db3" {
    port = 5473
    slot = "db3"
  }

  replication {
    password = env("PGHA_REPLICATION_PASSWORD")
  }

  catalog "redis" {
    address = "10.0.0.5:6393"
    managed = true
  }
}
