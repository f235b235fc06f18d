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
    repository  = "s3://pgha-backups/prod/bk"
    compression = "zstd"
    s3 {
      endpoint   = "https://s3.example.com:9000"
      region     = "eu-west-1"
      access_key = "AKIAEXAMPLE"
      secret_key = file("./repl.secret")
      ca_file    = "./ca.crt"
      part_size  = "64MB"
    }
  }
}
