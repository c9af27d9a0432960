"""Shared test configuration: hypothesis profiles (``ci`` when the CI variable is set, else ``dev``); on several
workers, the lock that runs an ``alone`` test with no other test beside it, and the order the tests are handed out
in (the longest first)."""

from __future__ import annotations

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
        #: the lock file this worker holds and whether exclusively (an exclusive hold is kept across `alone` tests
        #: in a row: each would otherwise wait at the gate for the other worker's test of the moment, maybe minutes)
        self.held: tuple[Any, bool] | None = None

    def enter(self, exclusive: bool) -> None:
        if self.held is not None:
            if self.held[1] == exclusive:
                return
            self.leave()
        lock = self.lock.open("a")
        try:
            with self.gate.open("a") as gate:
                fcntl.flock(gate, fcntl.LOCK_EX)
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                finally:
                    fcntl.flock(gate, fcntl.LOCK_UN)
        except BaseException:  # (an interrupted wait): the handle is not kept
            lock.close()
            raise
        self.held = (lock, exclusive)

    def leave(self) -> None:
        if self.held is not None:
            lock, _ = self.held
            self.held = None
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


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


def is_alone(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("alone") is not None


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Outside every other wrapper (pytest-timeout's too): the wait for the lock is no part of a test's time."""
    lock = item.config.stash.get(SUITE_LOCK, None)
    if lock is None:
        yield
        return
    exclusive = is_alone(item)
    lock.enter(exclusive)
    try:
        yield
    finally:
        if not (exclusive and is_alone(nextitem)):
            lock.leave()


# -- the order the workers take the tests in ---------------------------------------------------------------------------
# `make test` hands the tests out a couple at a time, in collection order (--dist load --maxschedchunk 2), so the
# longest start first and the short ones fill in at the end: the slow tests first, the modules that take longest
# (measured with --durations) ahead of the others; the `alone` tests last, together (they stop the other worker,
# and waiting for a short test costs less than waiting for a QEMU run).
HEAVIEST_MODULES = ("integration/test_qemu_board.py", "hil/test_standard_scenarios.py", "integration/test_c_stub.py",
                    "physics/test_twins.py", "integration/test_console_browser.py", "packaging/test_packaging.py",
                    "integration/test_batch_sampling.py")


def run_order(item: pytest.Item) -> tuple[int, int]:
    path = item.path.as_posix()
    rank = next((k for k, name in enumerate(HEAVIEST_MODULES) if path.endswith(name)), len(HEAVIEST_MODULES))
    group = 2 if is_alone(item) else 0 if item.get_closest_marker("slow") is not None else 1
    return group, rank


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config, "workerinput", None) is not None:  # on several workers only: alone, the files' order
        items.sort(key=run_order)  # stable: a module's tests keep their order within a group
