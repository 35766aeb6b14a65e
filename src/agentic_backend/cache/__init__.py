"""The response cache: in memory (LRU, bounded in bytes) or Redis, counted in cache_operations_total."""
