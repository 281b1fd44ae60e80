"""PostgreSQL, the record: the embedded server, the connection pool, the schema's migrations."""
