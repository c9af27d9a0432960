"""The ``flatsat`` command: run, demo, monitor, orbit (and the HIL commands from ``hil``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from emulator import __version__
from emulator.clock import NS_PER_S, parse_duration_s
from emulator.errors import EmulatorError

log = logging.getLogger("flatsat")

#: a shipped config, by name (emulator.shipped); a path works too
DEFAULT_CONFIG = "suncatcher-proto"


def _duration(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flatsat",
        description="Hardware-in-the-loop emulator for AI-compute satellites: power bus, thermal, "
                    "accelerator board and radiation, over ZeroMQ or serial.",
        epilog="Run 'flatsat COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"flatsat {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the emulator from a config file",
                         description="Run the emulator: the board plane and control plane listen on the "
                                     "configured URLs; a board connects to the board URL.")
    add_run_options(run)
    run.add_argument("--plot", metavar="FILE.png", help="write a plot of the run (battery, bus, power, "
                                                        "temperatures, eclipses)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="software-only demo: emulator + reference board over ZeroMQ, a few orbits",
                          description="Start the emulator and the reference board controller as a separate "
                                      "process over ZeroMQ on loopback, fast-forward a few orbits in lockstep, "
                                      "then print a summary and write a plot.")
    demo.add_argument("--config", default=DEFAULT_CONFIG, help="satellite config, a file or a shipped name "
                                                               "(default: %(default)s)")
    demo.add_argument("--orbits", type=float, default=3.0, help="how many orbits to run (default 3)")
    demo.add_argument("--plot", default="out/demo.png", help="plot file (default: %(default)s)")
    demo.add_argument("--board", default="python -m firmware_stubs.reference",
                      help="board command; '{url}' is replaced by the board URL, else --url URL is appended")
    demo.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    demo.set_defaults(func=cmd_demo)

    mon = sub.add_parser("monitor", help="live table of the telemetry published at a URL",
                         description="Subscribe to a board-plane or control-plane URL and show the latest "
                                     "value of every telemetry field: a live table on a terminal (as many rows as "
                                     "fit; --topic narrows it, --once prints all), lines or JSON otherwise. Rails "
                                     "and heaters show by name.")
    mon.add_argument("url", help="e.g. zmq+tcp://127.0.0.1:5560 (control plane sees everything)")
    mon.add_argument("--duration", type=_duration, default=None, help="stop after this much wall time")
    mon.add_argument("--once", action="store_true", help="print one snapshot after a full second of telemetry and exit")
    mon.add_argument("--truth", action="store_true", help="also show the ground truth stream (truth.sample, control "
                                                           "plane only; long)")
    mon.add_argument("--format", choices=["table", "lines", "json"],
                     help="table (live, the default on a terminal), lines (one per message, the default when stdout "
                          "is not a terminal) or json (one object per message)")
    mon.add_argument("--topic", action="append", metavar="PATTERN",
                     help="only topics matching this glob, e.g. 'eps.*' (repeatable)")
    mon.set_defaults(func=cmd_monitor)

    con = sub.add_parser("console", help="bench console in the browser: see and steer a running emulator live, "
                                         "or play a recording back",
                         description="Serve a web page (loopback only by default) that shows the emulated satellite "
                                     "live from its control plane (power, rails, thermal, accelerator, radiation, "
                                     "orbit, clock, links, plots of any telemetry field) and steers it (clock, "
                                     "rails, heaters, faults), or plays a recording back with a time slider.")
    from emulator.console import app as console_app  # argument table only; the web server loads when it runs

    console_app.add_arguments(con)
    con.set_defaults(func=console_app.run)

    orbit = sub.add_parser("orbit", help="eclipses, beta angle and passes of an orbit",
                           description="Propagate an orbit (TLE, elements, or sun-synchronous by altitude "
                                       "and LTAN) and print eclipses, orbits and a summary.")
    if importlib.util.find_spec("emulator.orbit_report") is not None:
        from emulator import orbit_report

        orbit_report.add_arguments(orbit)
        orbit.set_defaults(func=orbit_report.run)
    if importlib.util.find_spec("hil.cli") is not None:
        from hil import cli as hil_cli

        hil_cli.add_commands(sub)
    return parser


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="TOML config file, or the name of a shipped one: "
                   "suncatcher-proto, cubesat-6u-jetson, cubesat-6u-jetson-external, starcloud-like "
                   "(default: %(default)s)")
    p.add_argument("--mode", choices=["realtime", "scaled", "afap", "lockstep"], help="clock mode (overrides sim.mode)")
    p.add_argument("--speed", type=float, help="wall-clock multiplier for --mode scaled")
    p.add_argument("--duration", type=_duration, help="sim time to run, e.g. 1d, 6h, 90m, 3600 (default: config)")
    p.add_argument("--seed", type=int, help="seed (overrides sim.seed)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # a background job of a non-interactive shell inherits SIGINT ignored: restore it for every command (async
    # commands then take it on their loop, emulator.interrupt); Ctrl-C and kill -INT always stop flatsat
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.default_int_handler)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EmulatorError as exc:
        print(f"flatsat {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before a command installed its handler (emulator.interrupt)
        print(f"flatsat {args.command}: interrupted", file=sys.stderr)
        return 130


# -- run ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from emulator.config import load_config, read_raw

    overrides = overrides_from_args(args)
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
        if not busy or not movable:
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

    emu = await start_emulator(cfg, movable or [])
    duration_s = cfg.run.sim.duration_s
    series = Series()
    intr = Interrupts()
    try:  # started by start_emulator
        intr.install(emu.request_stop)
        wall0 = emu.clock.wall.now_ns()
        if plot or not quiet:  # the summary and the plot are what read the series: nobody else, no sampling
            emu.add_observer(truth_sampler(emu, series, duration_s / 2000 if duration_s else 60.0))
        if not quiet:
            for line in banner(emu):
                print(line, file=sys.stderr)
        for plane, link in (("board", emu.board_link), ("control", emu.control_link)):
            if link is not None and link.server_key:  # printed even with --quiet: clients need it to connect
                print(f"flatsat: {plane} plane {link.server_key}", file=sys.stderr)
        with _progress(emu, cfg.run.sim.duration_s, quiet):
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

        plot_run(series, plot, title=f"{cfg.satellite.name}: {cfg.source}", epoch_utc=utc_text(emu.clock.utc(0)))
        print(f"plot written to {plot}", file=sys.stderr)
    if emu.stalled:
        print(f"flatsat run: {emu.stalled}", file=sys.stderr)
        return EXIT_SETUP
    return intr.exit_code or 0


def banner(emu: Any) -> list[str]:
    """What listens where, and what a lockstep run waits for (printed at the start of a run)."""
    lines = [(f"flatsat: board plane {emu.board_url or '-'}  control plane {emu.control_url or '-'}  "
              f"mode {emu.clock.mode}")]
    if emu.board_url and "cmd_port=" in emu.board_url:
        lines.append("flatsat: a zmq+tcp URL is two ports: telemetry (PUB) on the URL's port, requests (ROUTER) "
                     "on cmd_port; give boards the whole URL")
    if str(emu.clock.mode) == "lockstep":
        src = emu.run_config.sim.lockstep_source
        who = "the board (board.step)" if src == "board" else "the control plane (clock.step / clock.run_until)"
        lines.append(f"flatsat: lockstep: sim time advances only when {who} says so "
                     f"(sim.lockstep_source = {src!r}); waiting for {emu.lockstep_awaits()}")
    return lines


def recording_line(recorder: Any) -> str:
    """'recording: out/run.rec (12.3 MB, 45,678 messages)', and where a size cap cut it."""
    path = Path(recorder.path)
    size = path.stat().st_size if path.exists() else 0
    text = f"recording: {path} ({fmt_bytes(size)}, {recorder.records:,} messages)"
    if recorder.capped_at_ns is not None:
        text += (f"; CUT at sim t={_fmt_s(recorder.capped_at_ns / NS_PER_S)} by record.max_mb "
                 f"({recorder.max_bytes / 1e6:g} MB): {recorder.dropped:,} later messages are not in it "
                 "(--record-max-mb, or a lower --truth-rate)")
    return text


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def truth_sampler(emu: Any, series: Any, every_s: float) -> Any:
    """An observer that appends the flattened ground truth to ``series`` about every ``every_s`` of sim time,
    looking 5 times as often and keeping each window's min and max of the plotted signals (spikes show)."""
    from emulator.plotting import PANELS, SUMMARY_PATTERNS
    from emulator.series import EnvelopeSampler, Series, flatten

    every_ns = max(emu.step_ns, round(every_s * NS_PER_S))
    fine_ns = max(emu.step_ns, every_ns // 5)
    first = emu.model.truth()
    probe = Series()
    probe.append(0, flatten(first))
    keys = probe.match([*(p for _, _, pats in PANELS for p in pats), *SUMMARY_PATTERNS])
    sampler = EnvelopeSampler(series, every_ns, keys, first)
    next_ns = [0]

    def sample(t_ns: int) -> None:
        if t_ns >= next_ns[0]:
            next_ns[0] = t_ns + fine_ns
            sampler.observe(t_ns, emu.model.truth())

    return sample


@contextlib.contextmanager
def _progress(emu: Any, duration_s: float | None, quiet: bool):  # type: ignore[no-untyped-def]
    if quiet:
        yield
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]sim[/] {task.fields[simtime]}"), BarColumn(),
                        TextColumn("{task.percentage:>5.1f}%"),
                        TextColumn("x{task.fields[speed]} real time  lag {task.fields[lag]}"),
                        TextColumn("wall"), TimeElapsedColumn(), transient=False)
    total = duration_s * NS_PER_S if duration_s else None
    task = progress.add_task("run", total=total, simtime="0 s", speed="-", lag="0 ms")
    stride = [1]

    def update(t_ns: int) -> None:
        st = emu.clock.stats
        if st.steps % stride[0]:
            return
        # aim for ~20 updates per wall second whatever the speed
        rtf = emu.clock.realtime_factor()
        steps_per_wall_s = rtf * NS_PER_S / emu.step_ns
        stride[0] = max(1, min(10_000, int(steps_per_wall_s / 20)))
        progress.update(task, completed=t_ns, simtime=_fmt_s(t_ns / NS_PER_S), speed=f"{rtf:,.0f}",
                        lag=f"{st.lag_ns / 1e6:.1f} ms")

    with progress:
        remove = emu.add_observer(update)
        try:
            yield
        finally:
            remove()
            update(emu.clock.now_ns())


def _fmt_s(s: float) -> str:
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}"


def board_summary(emu: Any) -> str:
    """Which boards said hello; or that none did, so the accelerator idled (nobody gave it work)."""
    seen = emu.stats.boards_seen
    if seen:
        return ", ".join(f"{name} {version}".strip() for name, version in sorted(seen.items()))
    return "no board connected: the accelerator idles"


def print_summary(emu: Any, series: Any, wall_s: float | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from emulator.plotting import summary_rows

    console = Console(stderr=True)
    st = emu.clock.stats
    head = Table(title="run", show_header=False)
    head.add_row("sim time", _fmt_s(emu.clock.now_ns() / NS_PER_S))
    stepping_s = st.wall_elapsed_ns / NS_PER_S
    if wall_s is not None and wall_s - stepping_s > 0.05:
        head.add_row("wall time", f"{wall_s:.2f} s ({stepping_s:.2f} s stepping, the rest waiting)")
    else:
        head.add_row("wall time", f"{stepping_s:.2f} s")
    head.add_row("speed", f"{emu.clock.realtime_factor():,.0f} x real time")
    head.add_row("lag max / overruns", f"{st.max_lag_ns / 1e6:.2f} ms / {st.overruns}")
    head.add_row("commands (board / control)", f"{emu.stats.commands['board']} / {emu.stats.commands['control']}")
    head.add_row("refused (board / control)", f"{emu.stats.rejected['board']} / {emu.stats.rejected['control']}")
    head.add_row("board", board_summary(emu))
    if emu.stop_reason:
        head.add_row("stopped", emu.stop_reason)
    console.print(head)
    rows = summary_rows(series)
    if rows:
        table = Table(title="spacecraft")
        for col in ("signal", "min", "mean", "max", "end"):
            table.add_column(col, justify="right" if col != "signal" else "left")
        for row in rows:
            table.add_row(*row)
        console.print(table)


# -- demo --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from emulator.config import load_config

    cfg = load_config(args.config, {"sim.mode": "lockstep", "sim.lockstep_source": "board", "sim.seed": args.seed,
                                    "links.board": "zmq+tcp://127.0.0.1:0", "links.control": "zmq+tcp://127.0.0.1:0"})
    return asyncio.run(_demo(cfg, args))


async def _demo(cfg: Any, args: argparse.Namespace) -> int:
    import shlex

    from emulator.interrupt import Interrupts, interrupted_line
    from emulator.runtime import Emulator
    from emulator.series import Series

    emu = Emulator.from_config(cfg)
    period_s = emu.model.orbit_period_s() if hasattr(emu.model, "orbit_period_s") else 5820.0
    duration_s = args.orbits * period_s
    series = Series()
    intr = Interrupts()
    async with emu:
        intr.install(emu.request_stop)
        wall0 = emu.clock.wall.now_ns()
        emu.add_observer(truth_sampler(emu, series, duration_s / 1500))
        board_cmd = args.board.replace("{url}", emu.board_url) if "{url}" in args.board else \
            f"{args.board} --url {emu.board_url}"
        if board_cmd.split(" ", 1)[0] in ("python", "python3"):  # the interpreter flatsat runs in (its venv)
            board_cmd = f"{shlex.quote(sys.executable)} {board_cmd.split(' ', 1)[1]}"
        print(f"flatsat demo: {cfg.satellite.name}, {plural(args.orbits, 'orbit')} ({_fmt_s(duration_s)} of sim time), "
              f"board: {board_cmd}", file=sys.stderr)
        proc = await asyncio.create_subprocess_exec(*shlex.split(board_cmd))
        try:
            with _progress(emu, duration_s, False):
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

    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    board_name = ", ".join(sorted(emu.stats.boards_seen)) or f"board {args.board!r} (no board.hello)"
    from emulator.runtime import utc_text

    plot_run(series, args.plot, title=f"flatsat demo: {cfg.satellite.name}, {board_name}, "
                                      f"{plural(args.orbits, 'orbit')}", epoch_utc=utc_text(emu.clock.utc(0)))
    print(f"plot written to {args.plot}", file=sys.stderr)
    if intr.exit_code is not None:
        return intr.exit_code
    if emu.stalled:
        print(f"flatsat demo: {emu.stalled}", file=sys.stderr)
        return 2
    return 0 if not emu.stop_reason.startswith("board process") else 1


def plural(n: float, noun: str) -> str:
    """'1 orbit', '3 orbits', '0.5 orbits'."""
    return f"{n:g} {noun}" + ("" if n == 1 else "s")


# -- monitor -----------------------------------------------------------------------------------
def cmd_monitor(args: argparse.Namespace) -> int:
    return asyncio.run(_monitor(args.url, args.duration, args.once, args.truth, fmt=args.format,
                                topics=args.topic or None))


async def _monitor(url: str, duration_s: float | None, once: bool, truth: bool = False, **kwargs: Any) -> int:
    from emulator.monitor import monitor

    return await monitor(url, duration_s, once, truth, **kwargs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
