"""Sessions: agent conversations owned by an API key, with an idle time-to-live."""
