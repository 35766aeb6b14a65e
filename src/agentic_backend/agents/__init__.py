"""Agents: agent types, the tool loop, and the query service that accounts for every call."""
