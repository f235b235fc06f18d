cluster "x" {
  primary = "db1"
  postgres {
    password = env("PGHA_TEST_SURELY_UNSET")
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
