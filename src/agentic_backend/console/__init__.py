"""The console: a browser UI served by the service itself (overview, spend, queries, keys, alerts)."""
