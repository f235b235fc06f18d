cluster "x" {
  primary = "db1"
  node "db1" {
    port = 5441
  }
}
