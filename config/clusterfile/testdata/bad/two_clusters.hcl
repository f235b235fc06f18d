cluster "a" {
  primary = "db1"
}
cluster "b" {
  primary = "db1"
}
