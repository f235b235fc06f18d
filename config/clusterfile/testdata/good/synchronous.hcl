# Synchronous replication: one of the two standbys confirms each commit
# (ANY 1 (db2, db3)); with both gone, writes wait (strict).
cluster "sync" {
  primary = "db1"
  postgres {
    password = "p"
  }
  replication {
    password = "r"
    synchronous {
      standbys = 1
      mode     = "quorum"
      strict   = true
    }
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
  }
  node "db3" {
    port = 5443
  }
  catalog "redis" {
    address = "127.0.0.1:6390"
    managed = true
  }
}
