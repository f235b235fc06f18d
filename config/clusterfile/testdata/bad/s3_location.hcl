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
    repository = "s3://Backups_Here/../up"
    s3 {
      access_key = "a"
      secret_key = "s"
    }
  }
}
