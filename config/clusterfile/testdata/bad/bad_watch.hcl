cluster "x" {
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
  failover {
    primary_crash = "reboot"
  }
  watch {
    heal   = "yes please"
    rejoin = "clone"
    config = "auto"
    backup = true
  }
}
