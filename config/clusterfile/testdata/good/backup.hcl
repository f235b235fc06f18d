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
    repository  = "./repo"
    compression = "zstd"
    level       = 3
    schedule {
      full  = "0 3 * * 0"
      drill = "0 4 * * *"
    }
    retention {
      days  = 14
      fulls = 2
    }
  }
}
