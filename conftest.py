"""Test configuration for the whole repository: the suite's plugin and the local-server fixtures."""

pytest_plugins = ["discovery.testing.plugin", "discovery.testing.server_fixtures"]
