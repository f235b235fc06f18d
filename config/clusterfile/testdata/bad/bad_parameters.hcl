cluster "x" {
  primary = "db1"
  postgres {
    password = "p"
    parameters = {
      "shared buffers" = "1GB"
      work_mem         = "4MB\nfsync = off"
      search_path      = ["a", "b"]
    }
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
