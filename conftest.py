"""Test configuration for the whole repository: the suite's plugin, the local-server fixtures, hypothesis's profile.

Property-based tests draw the same examples on every run (``derandomize``), so
a run on CI fails only where the code changed, never by the luck of the draw;
``HYPOTHESIS_PROFILE=explore`` draws new ones, to hunt for bugs locally.
"""

import os

from hypothesis import settings

pytest_plugins = ["discovery.testing.plugin", "discovery.testing.server_fixtures"]

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
