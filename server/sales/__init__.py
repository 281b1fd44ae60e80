"""Flash sales: records, the Redis store, the feed that tells rooms, checkout and payments, routes, room stats."""
