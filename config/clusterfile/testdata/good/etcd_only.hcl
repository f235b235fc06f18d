# etcd alone: synchronous replication needs no Redis when the record lives
# in etcd; defaults (ttl 9 s, plain http, no user).
cluster "etcdonly" {
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
    endpoints = ["http://127.0.0.1:2379"]
  }
}
