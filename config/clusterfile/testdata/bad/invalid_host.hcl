# A host goes into every node's pg_hba.conf and conninfo: only an IP
# address or a DNS name is accepted.
cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    host = "0.0.0.0/0 trust #"
    port = 5442
  }
  node "db3" {
    host = "db3.example.com host=evil"
    port = 5443
  }
  node "db4" {
    host = "-db4.example.com"
    port = 5444
  }
  replication {
    password = "r"
  }
}
