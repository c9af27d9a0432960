"""pytest plugin (entry point ``pytest11``): options, seed reporting and fixtures for HIL runs.

Options (each from the command line, else the environment, else the ini file, else its default):

==================== ================ ================== ===========================================
flag                 ini key          environment        meaning
==================== ================ ================== ===========================================
--hil-config X       hil_config       HIL_CONFIG         config TOML (a satellite or a cluster), or ``module:factory``
                                                         returning a SpacecraftModel (tests)
--hil-board CMD      hil_board        HIL_BOARD          start this board process (``--url URL`` added)
--hil-board-url URL  hil_board_url    HIL_BOARD_URL      listen here for a real board
--hil-mode MODE      hil_mode         HIL_MODE           clock mode (default: lockstep stepped by the
                                                         board when a test uses one, else afap)
--hil-seed N         hil_seed         HIL_SEED           seed (default: time-based, printed)
--hil-record DIR     hil_record       HIL_RECORD         record every test's messages to DIR/<test>.rec
==================== ================ ================== ===========================================

Fixtures: ``hil_seed``, ``emulator`` (a started :class:`~hil.runner.HilEmulator`; override it in a
test module to build your own), ``board`` (the board process, or the real board once it said
hello; skips the test when no board is configured), ``sat`` (:class:`Sat`: sim-time waits,
ground truth, faults). A lab's conftest may build the model with the hook
``pytest_hil_make_model(config, seed)``.

``emulator`` and ``board`` are asyncio fixtures run by pytest-asyncio (the ``pytest`` extra), declared with
its own decorator so they work in its default strict mode (tests marked ``@pytest.mark.asyncio``) as in
``asyncio_mode = auto``. Without pytest-asyncio, or for an async test it does not run, a test that asks for
them fails at set-up saying what to install or mark, not with pytest's generic "async fixture" error.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import re
import shlex
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import NS_PER_S, ClockMode
from emulator.errors import ConfigError, EmulatorError, SimTimeoutError
from emulator.protocol.envelope import Message

try:  # the `pytest` extra; without it the fixtures still load and say what to install when a test asks for one
    import pytest_asyncio
except ImportError:
    pytest_asyncio = None

#: wall seconds to wait for a board's board.hello, and for a lockstep board's next board.step
HELLO_TIMEOUT_S = 30.0
BOARD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Option:
    """One setting with three sources: ``--hil-<name>``, ini ``hil_<name>``, env ``HIL_<NAME>``."""

    name: str
    help: str
    metavar: str
    default: str | None = None

    @property
    def flag(self) -> str:
        return "--hil-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return f"hil_{self.name}"

    @property
    def env(self) -> str:
        return f"HIL_{self.name.upper()}"

    def value(self, config: pytest.Config) -> str | None:
        cli = config.getoption(self.ini, default=None)
        if cli not in (None, ""):
            return str(cli)
        env = os.environ.get(self.env)
        if env:
            return env
        ini = config.getini(self.ini)
        if ini:
            return str(ini)
        return self.default


OPTIONS = (
    Option("config", "satellite config TOML, or module:factory returning a SpacecraftModel", "FILE|MOD:FUNC",
           None),
    Option("board", "board command to start as a process ('--url URL' is appended, or '{url}' replaced)", "CMD"),
    Option("board_url", "URL the emulator listens on for a real board (e.g. serial:///dev/ttyACM0)", "URL"),
    Option("mode", "clock mode: lockstep, afap, realtime, scaled (default: lockstep stepped by the board when a "
                   "test uses one, else afap)", "MODE"),
    Option("seed", "seed of emulated runs (default: time-based, printed in the header)", "N"),
    Option("record", "record every test's messages to DIR/<test>.rec", "DIR"),
)
_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    config: str | None
    board: str | None
    board_url: str | None
    mode: str | None
    seed: int
    record: str | None

    def flags(self) -> str:
        """The options of this session, as command-line flags (for reproduce lines)."""
        parts = []
        for name in ("config", "board", "board_url", "mode", "record"):
            value = getattr(self, name)
            if value:
                parts += [_BY_NAME[name].flag, value]
        return shlex.join([*parts, "--hil-seed", str(self.seed)])


SETTINGS_KEY = pytest.StashKey[Settings]()
SEED_KEY = pytest.StashKey[int]()


class HilHookSpecs:
    @pytest.hookspec(firstresult=True)
    def pytest_hil_make_model(self, config: pytest.Config, seed: int) -> Any:
        """Return the SpacecraftModel for the ``emulator`` fixture (None: use --hil-config)."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(HilHookSpecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flatsat", "flatsat hardware-in-the-loop runs")
    for opt in OPTIONS:
        default = f"; default: {opt.default}" if opt.default else ""
        group.addoption(opt.flag, action="store", dest=opt.ini, default=None, metavar=opt.metavar,
                        help=f"{opt.help} (env {opt.env}, ini {opt.ini}{default})")
        parser.addini(opt.ini, f"{opt.help} (flag {opt.flag}, env {opt.env})", default="")


def pytest_configure(config: pytest.Config) -> None:
    seed_text = _BY_NAME["seed"].value(config)
    try:
        seed = int(seed_text) if seed_text is not None else int(time.time()) % 100_000
    except ValueError:
        raise pytest.UsageError(f"--hil-seed / HIL_SEED / hil_seed must be an integer, got {seed_text!r}") from None
    config.stash[SEED_KEY] = seed
    vals = {o.name: o.value(config) for o in OPTIONS if o.name != "seed"}
    if vals["board"] and vals["board_url"]:
        raise pytest.UsageError("give --hil-board CMD (a simulated board) or --hil-board-url URL (a real one), "
                                "not both")
    if vals["mode"] and vals["mode"] not in ("lockstep", "afap", "realtime", "scaled"):
        raise pytest.UsageError(f"--hil-mode {vals['mode']!r}: valid modes are lockstep, afap, realtime, scaled")
    config.stash[SETTINGS_KEY] = Settings(seed=seed, **vals)


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.stash[SEED_KEY]
    s = config.stash[SETTINGS_KEY]
    target = f"board process {s.board!r}" if s.board else f"real board at {s.board_url}" if s.board_url else "no board"
    return (f"flatsat: hil seed {seed} (reproduce with --hil-seed {seed}); config "
            f"{s.config or 'default'}; {target}")


@pytest.fixture
def hil_seed(request: pytest.FixtureRequest) -> int:
    """The run's seed (``--hil-seed``), so any failure reproduces."""
    return request.config.stash[SEED_KEY]


# -- building the emulator ------------------------------------------------------------------------
def _factory(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--hil-config {spec!r}: cannot import {module_name!r}: {exc}", field="hil_config") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        valid = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ConfigError(f"--hil-config {spec!r}: {module_name} has no callable {attr!r}", field="hil_config",
                          valid=valid)
    return factory


def is_factory_spec(value: str) -> bool:
    """'toy_model:Lamp' names a factory; 'configs/x.toml' (or an existing path) names a config file."""
    return bool(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value)) and not Path(value).exists()


def make_emulator(config: pytest.Config, *, seed: int, with_board: bool, record_path: str | None) -> Any:
    """The ``emulator`` fixture's emulator (not started).

    Raises:
        ConfigError: bad --hil-config.
    """
    from emulator.config import load_config, split_run
    from emulator.dotted import apply_overrides
    from hil.runner import HilEmulator

    s = config.stash[SETTINGS_KEY]
    mode = s.mode or ("lockstep" if with_board else "afap")
    listen = (s.board_url or "zmq+tcp://127.0.0.1:0") if with_board else None
    forced = {"sim.seed": seed, "sim.mode": mode,
              "sim.lockstep_source": "board" if with_board and mode == "lockstep" else "control"}
    kwargs = {"board_url": listen, "control_url": None, "record_path": record_path}
    model = config.hook.pytest_hil_make_model(config=config, seed=seed)
    if model is None and s.config and is_factory_spec(s.config):
        factory = _factory(s.config)
        params = inspect.signature(factory).parameters
        model = factory(seed=seed) if "seed" in params else factory()
    if model is not None:
        raw: dict[str, Any] = {}
        apply_overrides(raw, forced)
        run = split_run(raw, "--hil-config")
        return HilEmulator(model, run, **kwargs)
    from emulator.shipped import DEFAULT_SATELLITE as DEFAULT_CONFIG

    cfg = load_config(s.config or DEFAULT_CONFIG, forced)
    return HilEmulator.from_config(cfg, **kwargs)


def _record_path(request: pytest.FixtureRequest) -> str | None:
    s = request.config.stash[SETTINGS_KEY]
    if not s.record:
        return None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
    return str(Path(s.record) / f"{name}.rec")


def _uses_board(request: pytest.FixtureRequest) -> bool:
    s = request.config.stash[SETTINGS_KEY]
    return "board" in request.fixturenames and bool(s.board or s.board_url)


def asyncio_fixture(fn: Callable[..., Any]) -> Any:
    """pytest-asyncio's fixture decorator (strict mode runs only fixtures declared with it), else pytest's."""
    return pytest_asyncio.fixture(fn) if pytest_asyncio is not None else pytest.fixture(fn)


def asyncio_problem(config: pytest.Config, item: pytest.Item) -> str | None:
    """Why pytest-asyncio would not run the plugin's async fixtures for ``item`` (None: it will)."""
    if not config.pluginmanager.hasplugin("asyncio"):
        if importlib.util.find_spec("pytest_asyncio") is None:
            return ("flatsat's fixtures (emulator, and sat and board on it) run on asyncio and need pytest-asyncio, "
                    "which is not installed: pip install 'flatsat[pytest]' (or pip install pytest-asyncio)")
        return ("flatsat's fixtures (emulator, and sat and board on it) run on asyncio and need the pytest-asyncio "
                "plugin, which is installed but disabled (-p no:asyncio?)")
    func = getattr(item, "obj", None)
    if inspect.iscoroutinefunction(func) and pytest_asyncio is not None and not pytest_asyncio.is_async_test(item):
        return (f"{item.name} is an async test but pytest-asyncio does not run it (its strict mode runs only "
                f"marked tests): mark it @pytest.mark.asyncio, or set asyncio_mode = auto in the pytest ini file")
    return None


@pytest.fixture
def hil_asyncio(request: pytest.FixtureRequest) -> None:
    """Fails the test at set-up, saying what to install or mark, if pytest-asyncio would not run ``emulator``.

    ``emulator`` asks for it first: pytest's own error for an unhandled async fixture names no remedy.
    """
    problem = asyncio_problem(request.config, request.node)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@asyncio_fixture
async def emulator(request: pytest.FixtureRequest, hil_asyncio: None, hil_seed: int) -> AsyncIterator[Any]:
    """A started emulator (links listening, nothing stepped yet) from --hil-config; override per module."""
    emu = make_emulator(request.config, seed=hil_seed, with_board=_uses_board(request),
                        record_path=_record_path(request))
    async with emu:
        yield emu


# -- the board ------------------------------------------------------------------------------------
class Board:
    """The board under test: a process this plugin started, or a real board at a URL."""

    def __init__(self, emu: Any, url: str, process: Any | None) -> None:
        self.emu = emu
        self.url = url
        self.process = process
        #: killed by the test and not started again
        self.killed = False

    @property
    def simulated(self) -> bool:
        """True for a board process (CI), False for a real board (bench)."""
        return self.process is not None

    @property
    def hello(self) -> dict[str, Any]:
        """The board's last board.hello payload (name, version, capabilities)."""
        return self.emu.hellos[-1] if self.emu.hellos else {}

    async def kill(self) -> None:
        """Kill the board process (a crash / power cut); skips the test on a real board.

        Until :meth:`restart`, the test's waits step a lockstep clock themselves (nobody else does).
        """
        if self.process is None:
            pytest.skip("killing the board needs a board process (--hil-board)")
        await self.process.kill()
        self.killed = True
        self.emu.waiting_since_wall_ns = None

    async def restart(self) -> None:
        """Kill the board process and start it again; returns once it said hello."""
        from hil.runner import wait_for_hello

        await self.kill()
        clock = self.emu.clock
        if clock.mode == ClockMode.LOCKSTEP and (clock.limit_ns or 0) > clock.now_ns():
            # the new board steps from now: drop what the old one granted or a wait_for that held early left
            # (set_mode puts the lockstep limit at now), so its hello says the clock waits for it
            clock.set_mode(ClockMode.LOCKSTEP)
        self.emu.hello.clear()
        await self.process.start(self.url)
        await wait_for_hello(self.emu, timeout_s=HELLO_TIMEOUT_S, board=self.process, where=self.url)
        self.killed = False


#: each emulator's board, so that Sat (built from the emulator alone) sees whether the test killed it
BOARDS: weakref.WeakKeyDictionary[Any, Board] = weakref.WeakKeyDictionary()


@asyncio_fixture
async def board(request: pytest.FixtureRequest, emulator: Any) -> AsyncIterator[Board]:
    """The board process (--hil-board) or the real board (--hil-board-url), once it said board.hello."""
    import asyncio

    from hil.requirements import fmt_t
    from hil.runner import BoardProcess, describe_exit, step_watchdog, wait_for_hello

    s = request.config.stash[SETTINGS_KEY]
    if not (s.board or s.board_url):
        pytest.skip("no board: pass --hil-board CMD (a simulated board) or --hil-board-url URL (a real one)")
    if emulator.board_url is None:
        raise ConfigError("the emulator fixture has no board link (an overriding fixture must listen on one)",
                          field="links.board")
    url = str(emulator.board_url)
    process = None
    watchdog = None

    def died(code: int) -> None:
        if emulator.hello.is_set():
            emulator.request_stop(f"board process exited with code {describe_exit(code)} at "
                                  f"t={fmt_t(emulator.clock.now_ns() / NS_PER_S)}")

    try:
        if s.board:
            process = BoardProcess(s.board, on_unexpected_exit=died)
            await process.start(url)
        await wait_for_hello(emulator, timeout_s=HELLO_TIMEOUT_S, board=process, where=url)
        if emulator.run_config.sim.lockstep_source == "board":
            watchdog = asyncio.create_task(step_watchdog(emulator, BOARD_TIMEOUT_S), name="flatsat-hil-watchdog")
        handle = Board(emulator, url, process)
        BOARDS[emulator] = handle
        yield handle
    finally:
        BOARDS.pop(emulator, None)  # its Board holds the emulator: a weak key alone would never go
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if process is not None:
            await process.aclose()


# -- the test's handle on the spacecraft ----------------------------------------------------------
class Sat:
    """Sim-time waits, ground truth and faults for a test (never a real sleep)."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu

    @property
    def t_s(self) -> float:
        """Sim time, seconds."""
        return self.emu.clock.now_ns() / NS_PER_S

    def _check_running(self) -> None:
        if self.emu.stopped:
            raise EmulatorError(f"the run has stopped: {self.emu.stop_reason}")

    def _step_without_board(self, until_ns: int) -> None:
        """After the test killed the board, nobody steps its lockstep clock: let it run to ``until_ns``, as the
        scenario runner does after a board_kill (else the wait would hang until the step watchdog fires)."""
        board = BOARDS.get(self.emu)
        clock = self.emu.clock
        if (board is not None and board.killed and clock.mode == ClockMode.LOCKSTEP
                and self.emu.run_config.sim.lockstep_source == "board"
                and until_ns > max(clock.limit_ns or 0, clock.now_ns())):
            clock.run_until(until_ns)

    async def run_for(self, duration_s: float) -> None:
        """Advance ``duration_s`` of sim time.

        Raises:
            EmulatorError: the run stopped (e.g. the board process died).
        """
        self._check_running()
        self._step_without_board(self.emu.clock.now_ns() + round(duration_s * NS_PER_S))
        await self.emu.run_for(duration_s)
        self._check_running()

    async def wait_for(self, predicate: Callable[[], bool], *, within_s: float, what: str = "condition") -> float:
        """Step until ``predicate()`` holds; returns the sim time (s) it first held.

        Raises:
            SimTimeoutError: not within ``within_s`` of *sim* time.
            EmulatorError: the run stopped first (the board died or stopped stepping).
        """
        self._check_running()
        self._step_without_board(self.emu.clock.now_ns() + round(within_s * NS_PER_S))
        try:
            t_ns = await self.emu.wait_for(predicate, within_s=within_s, what=what)
        except SimTimeoutError:
            self._check_running()
            raise
        return t_ns / NS_PER_S

    def truth(self, path: str | None = None) -> Any:
        """Ground truth: the whole tree, or the value / subtree at a dotted path (``satellite.power``).

        Raises:
            ConfigError: no such path (with close matches).
        """
        from emulator.series import resolve_path

        tree = self.emu.truth()
        if path is None:
            return tree
        keys = resolve_path(tree, path.split("."))
        if keys is None:
            raise self._unknown(path, tree)
        node: Any = tree
        for k in keys:
            node = node[k]
        return node

    def signal(self, name: str) -> float:
        """A flattened ground-truth signal now, e.g. ``satellite.power.bus_v`` (bools read as 0/1).

        Raises:
            ConfigError: unknown signal (with close matches).
        """
        from emulator.series import flatten

        tree = self.emu.truth()
        flat = flatten(tree)
        if name not in flat:
            raise self._unknown(name, tree)
        return flat[name]

    def _unknown(self, name: str, tree: dict[str, Any]) -> ConfigError:
        from emulator.series import flatten
        from hil.scenario import close_signals

        close = close_signals(name, flatten(tree))
        hint = f"; close matches: {', '.join(close)}" if close else ""
        return ConfigError(f"unknown signal {name!r} (not in the ground truth){hint}", field="signal", valid=close)

    def inject(self, fault: str, params: dict[str, Any] | None = None, duration_s: float | None = None) -> int:
        """Inject a fault now (cleared after ``duration_s`` of sim time if given); returns its id.

        Raises:
            CommandError: unknown fault, bad params (naming the field and what is valid).
        """
        payload: dict[str, Any] = {"name": fault, "params": params or {}}
        if duration_s is not None:
            payload["duration_s"] = float(duration_s)
        return int(self.emu.control("fault.inject", payload)["fault_id"])

    def clear(self, fault_id: int) -> None:
        self.emu.control("fault.clear", {"fault_id": fault_id})

    def control(self, topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Any control-plane command in-process (same validation as over the wire)."""
        return dict(self.emu.control(topic, payload))

    async def expect_message(self, topic: str, *, where: dict[str, Any] | None = None,
                             within_s: float) -> Message:
        """Wait for the next message of ``topic`` (either plane, any direction) whose payload matches ``where``.

        Raises:
            SimTimeoutError: none within ``within_s`` of sim time.
        """
        from hil.requirements import matches
        from hil.scenario import MessageFilter

        flt = MessageFilter(topic=topic, where=where or {})
        got: list[Message] = []

        def hook(t_ns: int, plane: str, direction: str, msg: Message) -> None:
            if not got and matches(msg, flt):
                got.append(msg)

        self.emu.message_hooks.append(hook)
        try:
            await self.wait_for(lambda: bool(got), within_s=within_s, what=f"a {topic} message {where or ''}")
        finally:
            self.emu.message_hooks.remove(hook)
        return got[0]


@pytest.fixture
def sat(emulator: Any) -> Sat:
    """The test's handle on the spacecraft: ``await sat.wait_for(...)``, ``sat.signal(...)``, ``sat.inject(...)``."""
    return Sat(emulator)


# -- failure reports ------------------------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and "emulator" in getattr(item, "fixturenames", ()):
        s = item.config.stash[SETTINGS_KEY]
        emu = getattr(item, "funcargs", {}).get("emulator")
        lines = [f"seed {item.config.stash[SEED_KEY]}; reproduce: pytest {shlex.quote(item.nodeid)} {s.flags()}"]
        if emu is not None and hasattr(emu, "recent"):
            lines.append(f"sim time {emu.clock.now_ns() / NS_PER_S:g} s"
                         + (f"; run stopped: {emu.stop_reason}" if emu.stopped else ""))
            lines.append("last messages:")
            for t_ns, plane, direction, msg in list(emu.recent)[-15:]:
                lines.append(f"  t={t_ns / NS_PER_S:.3f} s {plane} {direction} {msg.topic} {msg.payload!r}"[:240])
        report.sections.append(("flatsat", "\n".join(lines)))
    return report
