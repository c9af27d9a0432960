"""Shared test configuration: hypothesis profiles (``ci`` when the CI variable is set, else ``dev``)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# ci: reproducible (the same examples every run), no example database, no deadline (shared runners are
# noisy; wall-clock deadlines would make the suite flaky, and no test here asserts on timing).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
# dev: random examples, a few more of them, failures remembered in .hypothesis/ and replayed first.
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
