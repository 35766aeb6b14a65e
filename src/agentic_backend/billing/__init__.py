"""Billing: pricing model calls, the usage ledger, budgets and rate limits."""
