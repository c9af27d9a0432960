"""pytest plugin (entry point ``pytest11``): options, seed reporting and fixtures for HIL runs."""

from __future__ import annotations

import os
import time

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flatsat", "flatsat hardware-in-the-loop runs")
    group.addoption("--hil-seed", action="store", default=None,
                    help="seed for emulated runs (env HIL_SEED; default: time-based, printed in the header)")


def pytest_configure(config: pytest.Config) -> None:
    seed = config.getoption("--hil-seed", default=None) or os.environ.get("HIL_SEED")
    config.stash[SEED_KEY] = int(seed) if seed is not None else int(time.time()) % 100_000


def pytest_report_header(config: pytest.Config) -> str:
    return f"flatsat: hil seed {config.stash[SEED_KEY]} (reproduce with --hil-seed {config.stash[SEED_KEY]})"


SEED_KEY = pytest.StashKey[int]()


@pytest.fixture
def hil_seed(request: pytest.FixtureRequest) -> int:
    """The run's seed (``--hil-seed``), so any failure reproduces."""
    return request.config.stash[SEED_KEY]
