cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
    slot = "pgha_archive"
  }
  replication {
    password = "r"
  }
  backup {
    archive {}
  }
}
