cluster "x" {
  primary = "db1"
  postgres {
    superuser = "postgres"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = ""
  }
}
