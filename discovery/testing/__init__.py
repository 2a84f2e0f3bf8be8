"""Conformance suite and test helpers for discovery backends."""
