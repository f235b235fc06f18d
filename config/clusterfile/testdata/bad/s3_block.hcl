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
    repository = "s3://pgha-backups/prod"
    s3 {
      endpoint  = "s3.example.com:9000"
      region    = ""
      part_size = "1MB"
    }
  }
}
