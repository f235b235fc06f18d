# Certificates kept by the operator: ./certs holds ca.crt (without
# ca.key pgha issues nothing) and db1.crt/db1.key, pgha.crt/pgha.key.
cluster "given" {
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
  tls {
    dir = "./certs"
  }
}
