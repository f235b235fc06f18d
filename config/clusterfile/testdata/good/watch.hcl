# The watch policy spelt out: failover by hand, a crashed primary replaced
# at once rather than restarted, no healing, rejoin and config edits left
# for pgha apply.
cluster "watched" {
  primary = "db1"
  postgres {
    password = "p"
  }
  replication {
    password = "r"
  }
  node "db1" {
    port = 5441
  }
  node "db2" {
    port = 5442
  }
  failover {
    automatic     = false
    primary_crash = "failover"
    failback      = "automatic"
  }
  watch {
    heal   = false
    rejoin = "manual"
    config = "plan"
  }
}
