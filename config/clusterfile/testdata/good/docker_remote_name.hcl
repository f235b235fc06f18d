# An engine named by DNS: bind says where its ports are published; with
# "0.0.0.0" (all of that host's addresses) pgha connects to the name.
# insecure_tcp accepts an engine without TLS, said in so many words.
cluster "remotename" {
  primary = "db1"
  postgres {
    password = "p"
  }
  runtime "docker" {
    host         = "tcp://docker1.example.net:2375"
    insecure_tcp = true
    bind         = "0.0.0.0"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
