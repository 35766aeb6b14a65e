"""Identity: API keys, roles and permissions, authentication and the brute-force guard."""
