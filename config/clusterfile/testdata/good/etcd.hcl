# etcd as the authority (issue 14): the lock, the leases and the record
# (with the synchronous set) in a three-member etcd; backups and history
# stay in the Redis catalog.
cluster "etcd" {
  primary = "db1"
  postgres {
    password = "p"
  }
  replication {
    password = "r"
    synchronous {
      standbys = 1
    }
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
  }
  authority "etcd" {
    endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"]
    username  = "pgha"
    password  = file("repl.secret")
    ttl       = "12s"
    ca_file   = "etcd/ca.pem"
    cert_file = "etcd/pgha.pem"
    key_file  = "etcd/pgha-key.pem"
  }
  catalog "redis" {
    address = "127.0.0.1:6390"
    managed = true
  }
}
