"""Shared plumbing: settings, the error hierarchy, the clock."""
