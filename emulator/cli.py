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
                                     "value of every telemetry field in the terminal.")
    mon.add_argument("url", help="e.g. zmq+tcp://127.0.0.1:5560 (control plane sees everything)")
    mon.add_argument("--duration", type=_duration, default=None, help="stop after this much wall time")
    mon.add_argument("--once", action="store_true", help="print one snapshot after a full second of telemetry and exit")
    mon.add_argument("--truth", action="store_true", help="also show the ground truth stream (truth.sample, control "
                                                           "plane only; long)")
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
    p.add_argument("--record", metavar="FILE", help="record every message on both planes to FILE")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set power.battery.capacity_wh=40 (repeatable; "
                        "VALUE is parsed as TOML)")


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
                      ("seed", "sim.seed"), ("step", "sim.step_s"), ("record", "record.path")):
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
    except KeyboardInterrupt:
        return 130


# -- run ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from emulator.config import load_config

    cfg = load_config(args.config, overrides_from_args(args))
    return asyncio.run(_run(cfg, plot=args.plot, quiet=args.quiet))


async def _run(cfg: Any, *, plot: str | None, quiet: bool) -> int:
    from emulator.runtime import Emulator
    from emulator.series import Series

    emu = Emulator.from_config(cfg)
    duration_s = cfg.run.sim.duration_s
    series = Series()
    async with emu:
        _install_signal_handlers(emu)
        if plot or not quiet:  # the summary and the plot are what read the series: nobody else, no sampling
            emu.add_observer(truth_sampler(emu, series, duration_s / 2000 if duration_s else 60.0))
        if not quiet:
            print(f"flatsat: board plane {emu.board_url or '-'}  control plane {emu.control_url or '-'}  "
                  f"mode {emu.clock.mode}", file=sys.stderr)
        for plane, link in (("board", emu.board_link), ("control", emu.control_link)):
            if link is not None and link.server_key:  # printed even with --quiet: clients need it to connect
                print(f"flatsat: {plane} plane {link.server_key}", file=sys.stderr)
        with _progress(emu, cfg.run.sim.duration_s, quiet):
            await emu.run()
    if not quiet:
        print_summary(emu, series)
    if plot:
        from emulator.plotting import plot_run

        plot_run(series, plot, title=f"{cfg.satellite.name}: {cfg.source}")
        print(f"plot written to {plot}", file=sys.stderr)
    return 0


def truth_sampler(emu: Any, series: Any, every_s: float) -> Any:
    """An observer that appends the flattened ground truth to ``series`` every ``every_s`` of sim time."""
    from emulator.series import flatten

    every_ns = max(emu.step_ns, round(every_s * NS_PER_S))
    next_ns = [0]

    def sample(t_ns: int) -> None:
        if t_ns >= next_ns[0]:
            next_ns[0] = t_ns + every_ns
            series.append(t_ns, flatten(emu.model.truth()))

    return sample


def _install_signal_handlers(emu: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, emu.request_stop, f"signal {signal.Signals(sig).name}")


@contextlib.contextmanager
def _progress(emu: Any, duration_s: float | None, quiet: bool):  # type: ignore[no-untyped-def]
    if quiet:
        yield
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]sim[/] {task.fields[simtime]}"), BarColumn(),
                        TextColumn("{task.percentage:>5.1f}%"),
                        TextColumn("x{task.fields[speed]} real time  lag {task.fields[lag]}"),
                        TimeElapsedColumn(), transient=False)
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


def print_summary(emu: Any, series: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from emulator.plotting import summary_rows

    console = Console(stderr=True)
    st = emu.clock.stats
    head = Table(title="run", show_header=False)
    head.add_row("sim time", _fmt_s(emu.clock.now_ns() / NS_PER_S))
    head.add_row("wall time", f"{st.wall_elapsed_ns / NS_PER_S:.2f} s")
    head.add_row("speed", f"{emu.clock.realtime_factor():,.0f} x real time")
    head.add_row("lag max / overruns", f"{st.max_lag_ns / 1e6:.2f} ms / {st.overruns}")
    head.add_row("commands (board / control)", f"{emu.stats.commands['board']} / {emu.stats.commands['control']}")
    head.add_row("refused (board / control)", f"{emu.stats.rejected['board']} / {emu.stats.rejected['control']}")
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

    from emulator.runtime import Emulator
    from emulator.series import Series

    emu = Emulator.from_config(cfg)
    period_s = emu.model.orbit_period_s() if hasattr(emu.model, "orbit_period_s") else 5820.0
    duration_s = args.orbits * period_s
    series = Series()
    async with emu:
        _install_signal_handlers(emu)
        emu.add_observer(truth_sampler(emu, series, duration_s / 1500))
        board_cmd = args.board.replace("{url}", emu.board_url) if "{url}" in args.board else \
            f"{args.board} --url {emu.board_url}"
        if board_cmd.split(" ", 1)[0] in ("python", "python3"):  # the interpreter flatsat runs in (its venv)
            board_cmd = f"{shlex.quote(sys.executable)} {board_cmd.split(' ', 1)[1]}"
        print(f"flatsat demo: {cfg.satellite.name}, {args.orbits:g} orbits ({_fmt_s(duration_s)} of sim time), "
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
    print_summary(emu, series)
    from emulator.plotting import plot_run

    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    plot_run(series, args.plot, title=f"flatsat demo: {cfg.satellite.name}, reference board, {args.orbits:g} orbits")
    print(f"plot written to {args.plot}", file=sys.stderr)
    return 0 if not emu.stop_reason.startswith("board process") else 1


# -- monitor -----------------------------------------------------------------------------------
def cmd_monitor(args: argparse.Namespace) -> int:
    return asyncio.run(_monitor(args.url, args.duration, args.once, args.truth))


async def _monitor(url: str, duration_s: float | None, once: bool, truth: bool = False) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from emulator.series import flatten
    from emulator.transports import connect

    latest: dict[str, dict[str, float]] = {}
    t_ns = 0

    def render() -> Table:
        table = Table(title=f"flatsat monitor {url}  sim t = {_fmt_s(t_ns / NS_PER_S)}")
        table.add_column("topic")
        table.add_column("field")
        table.add_column("value", justify="right")
        for topic in sorted(latest):
            for key, value in latest[topic].items():
                table.add_row(topic, key, f"{value:.4g}")
        return table

    console = Console()
    async with await connect(url) as link:
        with Live(render(), console=console, refresh_per_second=4, transient=once) as live:
            async def loop() -> None:
                nonlocal t_ns
                first_clock: int | None = None
                async for msg in link:
                    t_ns = max(t_ns, msg.t_ns)
                    if msg.topic == "sim.clock" and once:
                        # a whole cycle of topics lies between two sim.clock messages
                        if first_clock is not None and msg.t_ns > first_clock:
                            return
                        first_clock = msg.t_ns if first_clock is None else first_clock
                    if msg.topic == "truth.sample" and not truth:
                        continue
                    latest[msg.topic] = flatten(msg.payload)
                    live.update(render())

            try:
                async with asyncio.timeout(duration_s):
                    await loop()
            except TimeoutError:
                pass
        if once:
            console.print(render())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
