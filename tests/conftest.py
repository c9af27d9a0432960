"""Shared test configuration: hypothesis profiles (``ci`` when the CI variable is set, else ``dev``), and the lock that
runs an ``alone`` test with no other test beside it when the suite runs on several workers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# ci: reproducible (the same examples every run), no example database, no deadline (shared runners are
# noisy; wall-clock deadlines would make the suite flaky, and no test here asserts on timing).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
# dev: random examples, a few more of them, failures remembered in .hypothesis/ and replayed first.
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# -- several workers (pytest-xdist: `make test` runs the suite on 2) ------------------------------------------------
# A test marked `alone` asserts wall-clock behaviour (tick lateness, a 100 ms cut-off): no other test runs in any worker
# while it runs. Every test holds a lock file shared, an `alone` test holds it exclusively; a gate lock taken on the
# way in keeps new tests from starting while an `alone` test waits for the running ones to end (it cannot starve).
# The controller names the folder of both locks; without workers there is no lock.
LOCK_DIR = pytest.StashKey[Path]()
SUITE_LOCK = pytest.StashKey["SuiteLock"]()


class SuiteLock:
    def __init__(self, folder: Path) -> None:
        self.gate = folder / "gate"
        self.lock = folder / "lock"

    @contextlib.contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        with self.gate.open("a") as gate, self.lock.open("a") as lock:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if "flatsat_lock_dir" in workerinput:
            config.stash[SUITE_LOCK] = SuiteLock(Path(workerinput["flatsat_lock_dir"]))
    elif config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None):
        config.stash[LOCK_DIR] = Path(tempfile.mkdtemp(prefix="flatsat-suite-lock-"))


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(LOCK_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller: tell each worker where the locks are."""
    folder = node.config.stash.get(LOCK_DIR, None)
    if folder is not None:
        node.workerinput["flatsat_lock_dir"] = str(folder)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Outside every other wrapper (pytest-timeout's too): the wait for the lock is no part of a test's time."""
    lock = item.config.stash.get(SUITE_LOCK, None)
    if lock is None:
        yield
        return
    with lock.hold(exclusive=item.get_closest_marker("alone") is not None):
        yield
