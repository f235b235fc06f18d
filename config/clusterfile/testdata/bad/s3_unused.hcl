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
    repository = "./backups"
    s3 {
      access_key = "a"
      secret_key = env("PGHA_TEST_UNSET_S3_SECRET")
    }
  }
}
