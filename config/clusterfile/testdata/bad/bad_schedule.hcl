cluster "bk" {
  primary = "db1"
  postgres {
    password = "p"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
  backup {
    compression = "lz4"
    schedule {
      incremental = "every tuesday"
    }
  }
}
