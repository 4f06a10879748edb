"""Metrics and batch evaluation over the official evaluation JSON format."""
