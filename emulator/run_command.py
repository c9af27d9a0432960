"""``flatsat run`` and ``flatsat demo``: their arguments and what they do.

The command table (emulator.cli) imports this module only when one of them runs or shows its help.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

from emulator import shipped
from emulator.arguments import duration_arg, seed_arg
from emulator.clock import NS_PER_S
from emulator.errors import EmulatorError
from emulator.launch import board_env
from emulator.shipped import DEFAULT_SATELLITE
from emulator.terminal import (
    add_truth_sampler,
    banner,
    fmt_hms,
    plural,
    print_summary,
    progress,
    recording_line,
)


@contextlib.contextmanager
def startup() -> Iterator[None]:
    """Set-up (imports, pydantic schemas, the model): no cyclic garbage collection while thousands of long-lived
    objects are made (a collection every 700 of them, each walking all of them, costs ~5 % of start-up), and
    what exists after it frozen (kept out of the collections during the run: they would walk it all again)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    add_run_options(p)
    p.add_argument("--plot", metavar="FILE.png", help="write a plot of the run (battery, bus, power, "
                                                      "temperatures, eclipses)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_SATELLITE, help="satellite config, a file or a shipped name "
                                                               "(default: %(default)s)")
    p.add_argument("--orbits", type=float, default=3.0, help="how many orbits to run (default 3)")
    p.add_argument("--plot", default="out/demo.png", help="plot file (default: %(default)s)")
    p.add_argument("--board", default="python -m firmware_stubs.reference --telemetry per-turn",
                   help="board command; '{url}' is replaced by the board URL, else --url URL is appended "
                        "(default: %(default)s: the reference board, asking one sample per 10 s turn of what it "
                        "reads)")
    p.add_argument("--seed", type=seed_arg, default=1, help="seed (default 1)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_SATELLITE, help="TOML config file, or the name of a shipped one: "
                   f"{', '.join(shipped.names('satellite')) or '(none found)'} (default: %(default)s)")
    p.add_argument("--mode", choices=["realtime", "scaled", "afap", "lockstep"], help="clock mode (overrides sim.mode)")
    p.add_argument("--speed", type=float, help="wall-clock multiplier for --mode scaled")
    p.add_argument("--duration", type=duration_arg, help="sim time to run, e.g. 1d, 6h, 90m, 3600 (default: config)")
    p.add_argument("--seed", type=seed_arg, help="seed (overrides sim.seed)")
    p.add_argument("--step", type=float, help="physics step in seconds (overrides sim.step_s)")
    p.add_argument("--board-url", help="board-plane URL (overrides links.board); 'none' disables it")
    p.add_argument("--control-url", help="control-plane URL (overrides links.control); 'none' disables it")
    p.add_argument("--lockstep-timeout", type=float, metavar="S",
                   help="lockstep: wall seconds to wait for a step before giving up with exit code 2 "
                        "(overrides sim.lockstep_timeout_s, default 300; 0: wait for ever)")
    p.add_argument("--record", metavar="FILE", help="record every message on both planes to FILE")
    p.add_argument("--record-max-mb", type=float, metavar="MB",
                   help="stop writing the recording at this size (overrides record.max_mb, default 500)")
    p.add_argument("--truth-rate", type=float, metavar="HZ",
                   help="rate of the ground-truth stream (truth.sample, most of a recording's size; overrides "
                        "telemetry.truth_rate_hz, default 1; 0: none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set power.battery.cell_capacity_ah=1.5 "
                        "or --set power.rails.payload.max_retries=0 (repeatable; VALUE is parsed as TOML)")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    import tomllib

    out: dict[str, Any] = {}
    for item in getattr(args, "set", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EmulatorError(f"--set wants KEY=VALUE, got {item!r}", field="--set")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value  # a bare word is a string
    for attr, key in (("mode", "sim.mode"), ("speed", "sim.speed"), ("duration", "sim.duration_s"),
                      ("seed", "sim.seed"), ("step", "sim.step_s"), ("record", "record.path"),
                      ("lockstep_timeout", "sim.lockstep_timeout_s"), ("record_max_mb", "record.max_mb"),
                      ("truth_rate", "telemetry.truth_rate_hz")):
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    if getattr(args, "speed", None) is not None and getattr(args, "mode", None) is None:
        out["sim.mode"] = "scaled"
    for attr, key in (("board_url", "links.board"), ("control_url", "links.control")):
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = None if value.lower() == "none" else value
    return out


def _output_problems(command: str, args: argparse.Namespace) -> bool:
    """Print what is wrong with ``--plot`` / ``--record`` before the run (a run of hours must not end in a
    traceback because its plot cannot be written); True if anything is."""
    from emulator.outputs import file_problem

    problems = [p for p in (file_problem("--plot", args.plot, image=True) if getattr(args, "plot", None) else None,
                            file_problem("--record", args.record, example="run.rec") if getattr(args, "record", None)
                            else None) if p]
    for problem in problems:
        print(f"flatsat {command}: {problem}", file=sys.stderr)
    record = getattr(args, "record", None)
    if not problems and record and os.path.isfile(record) and os.path.getsize(record):
        print(f"flatsat {command}: --record {record}: replacing the file there "
              f"({os.path.getsize(record) / 1e6:.1f} MB)", file=sys.stderr)
    return bool(problems)


def cmd_run(args: argparse.Namespace) -> int:
    if _output_problems("run", args):
        return 2
    overrides = overrides_from_args(args)
    with startup():
        from emulator.config import load_config, read_raw

        raw, _ = read_raw(args.config)
        # a board link and --mode lockstep: the board steps the clock, unless the config file says otherwise
        if (args.mode == "lockstep" and "sim.lockstep_source" not in overrides and overrides.get("links.board", 1)
                and "lockstep_source" not in raw.get("sim", {})):
            overrides["sim.lockstep_source"] = "board"
        cfg = load_config(args.config, overrides, labels=override_labels(args))
    # planes on the default ports (5550, 5560) move to free ports when another emulator holds those; a URL
    # given on the command line or another port in the file stays put (and a busy one is an error with the fix)
    from emulator.config import LinksConfig

    movable = [plane for plane in ("board", "control") if f"links.{plane}" not in overrides
               and getattr(cfg.run.links, plane) == LinksConfig.model_fields[plane].default]
    return asyncio.run(_run(cfg, plot=args.plot, quiet=args.quiet, movable=movable))


def override_labels(args: argparse.Namespace) -> dict[str, str]:
    """Dotted key -> how the user gave it (``--set KEY=VALUE``, ``--step``), for error messages."""
    labels = {}
    for item in getattr(args, "set", []) or []:
        key = item.partition("=")[0].strip()
        labels[key] = f"--set {item}"
    for attr, key in (("speed", "sim.speed"), ("duration", "sim.duration_s"), ("seed", "sim.seed"),
                      ("step", "sim.step_s"), ("lockstep_timeout", "sim.lockstep_timeout_s")):
        if getattr(args, attr, None) is not None:
            labels[key] = f"--{attr.replace('_', '-')} {getattr(args, attr)}"
    return labels


async def start_emulator(cfg: Any, movable: list[str]) -> Any:
    """Build and start the emulator; a plane on a default port that is busy moves to an ephemeral port."""
    from emulator.errors import TransportUnavailableError
    from emulator.runtime import Emulator

    emu = Emulator.from_config(cfg)
    try:
        await emu.start()
        return emu
    except TransportUnavailableError as exc:
        busy = "address in use" in str(exc).lower()
        if not busy or (exc.field or "").removeprefix("links.") not in movable:  # a URL the user chose: theirs
            raise
        print(f"flatsat: {exc.message.split(':', 1)[0]}: the default port is in use (another emulator?); "
              "listening on free ports instead (the URLs follow; give the board its URL)", file=sys.stderr)
    moved = {f"{plane}_url": "zmq+tcp://127.0.0.1:0" for plane in movable}
    emu = Emulator.from_config(cfg, **moved)
    await emu.start()
    return emu


async def _run(cfg: Any, *, plot: str | None, quiet: bool, movable: list[str] | None = None) -> int:
    from emulator.interrupt import EXIT_SETUP, Interrupts, interrupted_line
    from emulator.series import Series

    with startup():
        emu = await start_emulator(cfg, movable or [])
    duration_s = cfg.run.sim.duration_s
    series = Series()
    intr = Interrupts()
    try:  # started by start_emulator
        intr.install(emu.request_stop)
        wall0 = emu.clock.wall.now_ns()
        if plot or not quiet:  # the summary and the plot are what read the series: nobody else, no sampling
            add_truth_sampler(emu, series, duration_s / 2000 if duration_s else 60.0)
        if not quiet:
            for line in banner(emu):
                print(line, file=sys.stderr)
        for plane, link in (("board", emu.board_link), ("control", emu.control_link)):
            if link is not None and link.server_key:  # printed even with --quiet: clients need it to connect
                print(f"flatsat: {plane} plane {link.server_key}", file=sys.stderr)
        with progress(emu, cfg.run.sim.duration_s, quiet):
            await emu.run()
        wall_s = (emu.clock.wall.now_ns() - wall0) / NS_PER_S
    finally:
        await emu.aclose()
    if intr.signum is not None:
        print(interrupted_line("run", intr, emu.clock.now_ns() / NS_PER_S), file=sys.stderr)
    if not quiet:
        print_summary(emu, series, wall_s=wall_s)
    if emu.recorder is not None:
        print(recording_line(emu.recorder), file=sys.stderr)
    if plot:
        from emulator.plotting import plot_run
        from emulator.runtime import utc_text

        plot_run(series, plot, title=f"{cfg.name}: {cfg.source}", epoch_utc=utc_text(emu.clock.utc(0)))
        print(f"plot written to {plot}", file=sys.stderr)
    if emu.stalled:
        print(f"flatsat run: {emu.stalled}", file=sys.stderr)
        return EXIT_SETUP
    return intr.exit_code or 0


def cmd_demo(args: argparse.Namespace) -> int:
    from emulator.config import load_config

    if _output_problems("demo", args):
        return 2
    with startup():
        cfg = load_config(args.config, {"sim.mode": "lockstep", "sim.lockstep_source": "board", "sim.seed": args.seed,
                                        "links.board": "zmq+tcp://127.0.0.1:0",
                                        "links.control": "zmq+tcp://127.0.0.1:0"})
    return asyncio.run(_demo(cfg, args))


async def _demo(cfg: Any, args: argparse.Namespace) -> int:
    import shlex

    from emulator.interrupt import Interrupts, interrupted_line
    from emulator.runtime import Emulator
    from emulator.series import Series

    with startup():
        emu = Emulator.from_config(cfg)
    period_s = emu.model.orbit_period_s() if hasattr(emu.model, "orbit_period_s") else 5820.0
    duration_s = args.orbits * period_s
    series = Series()
    intr = Interrupts()
    async with emu:
        intr.install(emu.request_stop)
        wall0 = emu.clock.wall.now_ns()
        add_truth_sampler(emu, series, duration_s / 1500)
        board_cmd = args.board.replace("{url}", emu.board_url) if "{url}" in args.board else \
            f"{args.board} --url {emu.board_url}"
        if board_cmd.split(" ", 1)[0] in ("python", "python3"):  # the interpreter flatsat runs in (its venv)
            board_cmd = f"{shlex.quote(sys.executable)} {board_cmd.split(' ', 1)[1]}"
        print(f"flatsat demo: {cfg.name}, {plural(args.orbits, 'orbit')} ({fmt_hms(duration_s)} of sim time), "
              f"board: {board_cmd}", file=sys.stderr)
        proc = await asyncio.create_subprocess_exec(*shlex.split(board_cmd), env=board_env())
        # the board takes a moment to start and say hello (the clock waits for it): meanwhile, the plot's imports,
        # which would otherwise come after the run
        from emulator.plotting import preload

        with startup():
            preload()
        try:
            with progress(emu, duration_s, False):
                run = asyncio.create_task(emu.run(duration_s), name="flatsat-demo-run")
                died = asyncio.create_task(proc.wait(), name="flatsat-demo-board")
                await asyncio.wait({run, died}, return_when=asyncio.FIRST_COMPLETED)
                if not run.done():
                    emu.request_stop(f"board process exited with code {proc.returncode}")
                await run
        finally:
            if proc.returncode is None:
                proc.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        wall_s = (emu.clock.wall.now_ns() - wall0) / NS_PER_S
    if intr.signum is not None:
        print(interrupted_line("demo", intr, emu.clock.now_ns() / NS_PER_S), file=sys.stderr)
    print_summary(emu, series, wall_s=wall_s)
    from emulator.plotting import plot_run

    board_name = ", ".join(sorted(emu.stats.boards_seen)) or f"board {args.board!r} (no board.hello)"
    from emulator.runtime import utc_text

    plot_run(series, args.plot, title=f"flatsat demo: {cfg.name}, {board_name}, "
                                      f"{plural(args.orbits, 'orbit')}", epoch_utc=utc_text(emu.clock.utc(0)))
    print(f"plot written to {args.plot}", file=sys.stderr)
    if intr.exit_code is not None:
        return intr.exit_code
    if emu.stalled:
        print(f"flatsat demo: {emu.stalled}", file=sys.stderr)
        return 2
    return 0 if not emu.stop_reason.startswith("board process") else 1
