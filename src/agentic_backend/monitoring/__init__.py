"""Monitoring: the metric catalogue, its storage and exposition, HTTP instrumentation and the API."""
