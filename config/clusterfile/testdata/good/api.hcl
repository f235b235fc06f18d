# The API of pgha watch with a node health port each (Patroni's 8008
# per node, one host here), plain HTTP although the cluster's TLS is on.
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
    health_port = 8008
  }
  node "db2" {
    port        = 5442
    health_port = 8009
  }
  api {
    listen = "127.0.0.1:9088"
    token  = "not-printed"
    tls    = false
  }
}
