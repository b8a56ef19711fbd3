"""The decision log: append-only, hash-chained records."""
