cluster "x" {
  primary = "db1
}
