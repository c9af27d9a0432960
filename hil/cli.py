"""The HIL subcommands of ``flatsat``: test (run scenarios), replay, plot and export (recordings).

``flatsat test`` exit codes: 0 every scenario passed, 1 any failed, 2 a set-up error (scenario,
config, board command, a board URL whose port is in use), printed without a traceback; 130 on
SIGINT (143 on SIGTERM), after writing the JUnit and the report of what ran, the interrupted
scenario as an error "interrupted at sim t=...".
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import math
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from emulator.arguments import positive_arg, seconds_arg, seed_arg
from emulator.clock import NS_PER_S, SimClock, WallSource
from emulator.errors import ConfigError, EmulatorError, suggest
from emulator.protocol.envelope import Message
from emulator.series import Series, flatten

#: a truth.sample payload is the satellite's truth(): its columns get this prefix, matching scenario signals
TRUTH_PREFIX = "satellite."


def add_test_arguments(test: argparse.ArgumentParser) -> None:
    """``flatsat test`` arguments."""
    test.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario file(s)")
    board = test.add_mutually_exclusive_group()
    board.add_argument("--board", metavar="CMD",
                       help="board command, e.g. 'python -m firmware_stubs.reference' ('--url URL' appended, or "
                            "'{url}' replaced); with '{fd}' it gets the master of a pty pair whose slave the "
                            "emulator opens as a serial board (the C stub: 'flatsat_board_posix --fd {fd} "
                            "--baud 921600'); with '{pty}' it gets a pty path to open, joined to the emulator's "
                            "(QEMU: 'qemu-system-arm -M lm3s6965evb -nographic -kernel flatsat_board.elf "
                            "-serial {pty}')")
    board.add_argument("--board-url", metavar="URL", help="URL to listen on for a real board, e.g. "
                                                          "serial:///dev/ttyACM0?baud=921600")
    test.add_argument("--seed", type=seed_arg, help="seed (overrides each scenario's)")
    test.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    test.add_argument("--report", metavar="DIR", help="write HTML reports here (<scenario>.html, index.html)")
    test.add_argument("--record", metavar="DIR", default="out/hil",
                      help="recordings and board logs go here (default: %(default)s)")
    test.add_argument("--truth-rate", type=float, metavar="HZ",
                      help="ground-truth (truth.sample) rate in the recording; default: the scenario's, else 1 Hz "
                           "for runs up to 30 min and 1800 samples over longer runs")
    test.add_argument("--record-max-mb", type=positive_arg, metavar="MB",
                      help="stop writing a recording at this size (default 500; the run goes on and says so)")
    test.add_argument("--hello-timeout", type=positive_arg, default=30.0, metavar="S",
                      help="wall seconds to wait for the board's board.hello (default 30)")
    test.add_argument("--board-timeout", type=seconds_arg, default=30.0, metavar="S",
                      help="wall seconds a lockstep run waits for the board's board.step before it gives up "
                           "(default 30)")
    test.add_argument("--line", metavar="OPTIONS",
                      help="serial options added to the pty line of a '{fd}' or '{pty}' board, e.g. "
                           "'ber=1e-4&ber_seed=7' (bit errors both ways: does the board survive a noisy line?)")
    test.add_argument("--quiet", action="store_true", help="no progress bar, no summaries")


def add_replay_arguments(rep: argparse.ArgumentParser) -> None:
    """``flatsat replay`` arguments."""
    rep.add_argument("file", help="recording (.rec)")
    rep.add_argument("--speed", type=positive_arg, default=1.0, help="x sim time (default 1: real time)")
    rep.add_argument("--to", default="zmq+tcp://127.0.0.1:5550", metavar="URL", help="listen here (default "
                                                                                     "%(default)s)")
    rep.add_argument("--plane", choices=["board", "control", "all"], default="board",
                     help="which plane's messages to play (default: board)")
    rep.add_argument("--wait", type=seconds_arg, default=1.0, metavar="S",
                     help="wall seconds between listening and the first message, for peers to connect")


def add_plot_arguments(plot: argparse.ArgumentParser) -> None:
    """``flatsat plot`` arguments."""
    plot.add_argument("file", help="recording (.rec)")
    plot.add_argument("-o", "--output", required=True, metavar="PNG", help="image file to write")


def add_export_arguments(exp: argparse.ArgumentParser) -> None:
    """``flatsat export`` arguments."""
    exp.add_argument("file", help="recording (.rec)")
    exp.add_argument("--csv", metavar="OUT", help="CSV file to write")
    exp.add_argument("--parquet", metavar="OUT", help="Parquet file to write (needs pyarrow)")
    exp.add_argument("--topic", action="append", default=[], metavar="TOPIC",
                     help="also export this topic's fields (repeatable), e.g. sim.clock")


def _err(text: str) -> None:
    print(text, file=sys.stderr)


# -- test --------------------------------------------------------------------------------------
def cmd_test(args: argparse.Namespace) -> int:
    from hil.scenario import ScenarioError, load_scenario

    scenarios = []
    bad = False
    for path in args.scenarios:
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as exc:
            _err(f"flatsat test: {exc}")
            bad = True
    if bad:
        return 2
    problems = output_problems(args)
    for problem in problems:
        _err(f"flatsat test: {problem}")
    if problems:
        return 2
    for sc in scenarios:
        if not sc.requirements:
            _err(f"flatsat test: warning: scenario {sc.name!r} has no [[requirement]]: nothing is checked, it passes "
                 "if the run completes")
    return asyncio.run(_test(scenarios, args))


def output_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the output paths (--junit FILE, --report DIR, --record DIR), found before any run: a run of
    hours must not end in a traceback because its report cannot be written. Missing folders are made."""
    from emulator.outputs import file_problem, folder_problem

    found = [file_problem("--junit", args.junit, example="junit.xml") if args.junit else None,
             folder_problem("--report", args.report) if args.report else None,
             folder_problem("--record", args.record) if args.record else None]
    return [p for p in found if p]


async def _test(scenarios: list[Any], args: argparse.Namespace) -> int:
    from emulator.interrupt import EXIT_SETUP, Interrupts, interrupted_line
    from hil.report import write_html, write_junit
    from hil.runner import ScenarioRun

    status = (lambda text: None) if args.quiet else (lambda text: _err(f"flatsat test: {text}"))
    runs = []
    bad = False
    for sc in scenarios:
        try:
            runs.append(ScenarioRun(sc, board_cmd=args.board, board_url=args.board_url, seed=args.seed,
                                    record_dir=args.record, progress=not args.quiet and sys.stderr.isatty(),
                                    hello_timeout_s=args.hello_timeout, board_timeout_s=args.board_timeout,
                                    status=status, truth_rate_hz=args.truth_rate,
                                    record_max_mb=args.record_max_mb, line_options=args.line))
        except EmulatorError as exc:
            _err(f"flatsat test: {exc}")
            bad = True
    if bad:
        return 2
    results = []
    current: list[Any] = []
    intr = Interrupts()
    intr.install(lambda reason: current[-1].emu.request_stop(reason) if current else None)
    for run in runs:
        current.append(run)
        try:
            res = await run.run()
        except EmulatorError as exc:  # set-up: the emulator could not start (a board URL whose port is in use)
            _err(f"flatsat test: {run.scenario.name}: {exc}")
            return EXIT_SETUP
        if intr.signum is not None:
            line = interrupted_line("test", intr, res.t_end_s)
            _err(f"{line} in scenario {run.scenario.name}")
            res.error = f"{line.removeprefix('flatsat test: ')}; the scenario did not finish"
        results.append(res)
        if not args.quiet:
            from emulator.terminal import print_summary

            print_summary(run.emu, res.series)
        print_result(res)
        if run.emu.recorder is not None:
            from emulator.terminal import recording_line

            _err(recording_line(run.emu.recorder))
        if intr.signum is not None:
            break
    if args.junit:
        _err(f"JUnit XML written to {write_junit(results, args.junit)}")
    if args.report:
        paths = write_html(results, args.report)
        _err(f"HTML report written to {paths[-1]}")
    failed = [r for r in results if not r.passed]
    _err(f"flatsat test: {len(results) - len(failed)} of {len(results)} scenario(s) passed"
         + (f" ({len(runs) - len(results)} not run: interrupted)" if len(results) < len(runs) else ""))
    if intr.exit_code is not None:
        return intr.exit_code
    return 1 if failed else 0


def print_result(res: Any) -> None:
    """The verdict table of one run (stdout)."""
    from rich.table import Table

    from emulator.terminal import console as make_console

    console = make_console()
    verdict = ("PASS" if res.verdicts else "PASS (no requirements: nothing checked)") if res.passed else "FAIL"
    table = Table(title=f"{res.scenario.name}: {verdict} (seed {res.seed})")
    table.add_column("#", justify="right")
    table.add_column("requirement")
    table.add_column("result")
    table.add_column("why")
    for v in res.verdicts:
        table.add_row(str(v.index), v.label, "pass" if v.passed else "[bold red]FAIL[/]", v.reason)
    console.print(table)
    if res.error:
        console.print(f"[bold red]run failed:[/] {res.error}", highlight=False, markup=True)
    if not res.passed:
        console.print(f"reproduce: {res.command}", highlight=False, markup=False, soft_wrap=True)


# -- recordings --------------------------------------------------------------------------------
def series_from_recording(path: str | Path, topics: Iterable[str] = ()) -> Series:
    """Ground truth (truth.sample, prefixed ``satellite.``) and the fields of ``topics`` as a Series.

    Raises:
        ConfigError: not a recording, or it holds no truth.sample (and none of ``topics``).
    """
    from emulator.recorder import read_recording

    extra = set(topics)
    series = Series()
    row: dict[str, float] = {}
    row_t: int | None = None
    seen: set[str] = set()
    for rec in read_recording(path):
        msg = rec.message
        seen.add(msg.topic)  # both ways: a board's requests (accel.job.submit) come in
        if msg.topic == "truth.sample" and rec.direction == "out":
            values = flatten(msg.payload, TRUTH_PREFIX)
        elif msg.topic in extra:
            values = flatten(msg.payload, msg.topic + ".")
        else:
            continue
        if row_t is not None and msg.t_ns != row_t:
            series.append(row_t, row)
            row = {}
        row_t = msg.t_ns
        row.update(values)
    if row_t is not None:
        series.append(row_t, row)
    missing = sorted(extra - seen)
    if missing:  # a topic asked for and not in the recording: a typo, or not recorded (say which it is not)
        valid = sorted(seen)
        raise ConfigError(f"{path}: no {', '.join(missing)} messages in this recording{suggest(missing[0], valid)}; "
                          f"its topics: {', '.join(valid) or '(none)'}", field="topic", valid=valid)
    if len(series) == 0:
        raise ConfigError(f"{path}: no truth.sample{' or ' + ', '.join(sorted(extra)) if extra else ''} messages "
                          "in this recording (was telemetry.truth_rate_hz 0?)", field="recording")
    return series


def cmd_plot(args: argparse.Namespace) -> int:
    from emulator.outputs import file_problem
    from emulator.plotting import plot_run
    from emulator.recorder import read_header

    meta = read_header(args.file).get("meta", {})
    problem = file_problem("-o", args.output, image=True)
    if problem:
        _err(f"flatsat plot: {problem}")
        return 2
    series = series_from_recording(args.file)
    title = f"{meta.get('scenario') or meta.get('satellite') or Path(args.file).stem} (seed {meta.get('seed', '?')})"
    out = plot_run(series, args.output, title=title, epoch_utc=meta.get("epoch_utc"))
    _err(f"plot written to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if not args.csv and not args.parquet:
        _err("flatsat export: give --csv OUT and/or --parquet OUT")
        return 2
    if args.parquet and importlib.util.find_spec("pyarrow") is None:
        _err("flatsat export: --parquet needs pyarrow, which is not installed; install it with "
             "pip install 'flatsat[parquet]' (or pip install pyarrow), or use --csv")
        return 2
    series = series_from_recording(args.file, args.topic)
    cols = series.to_columns()
    if args.csv:
        write_csv(cols, args.csv)
        _err(f"{len(series)} rows x {len(cols)} columns written to {args.csv}")
    if args.parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        Path(args.parquet).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), args.parquet)
        _err(f"{len(series)} rows x {len(cols)} columns written to {args.parquet}")
    return 0


def write_csv(cols: dict[str, list[float]], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(cols)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for i in range(len(cols["t_s"])):
            writer.writerow(["" if math.isnan(v) else repr(v) for v in (cols[n][i] for n in names)])


async def replay(path: str | Path, publish: Callable[[Message], Awaitable[None]], *, speed: float = 1.0,
                 planes: Iterable[str] = ("board",), wait_s: float = 0.0, wall: WallSource | None = None) -> int:
    """Publish a recording's outgoing messages (replies excluded) paced by sim time x ``speed``.

    Pacing comes from a :class:`~emulator.clock.SimClock` in ``scaled`` mode (absolute deadlines,
    no drift); the first message goes out ``wait_s`` wall seconds after the start.

    Returns:
        the number of messages published.

    Raises:
        ConfigError: not a recording.
        CommandError: speed outside 0.001 .. 1e6.
    """
    from emulator.recorder import read_recording

    planes = set(planes)
    clock = SimClock("scaled", speed=speed, wall=wall)
    lead_ns = round(wait_s * speed * NS_PER_S)
    first: int | None = None
    sent = 0
    for rec in read_recording(path):
        msg = rec.message
        if rec.direction != "out" or msg.topic == "reply" or rec.plane not in planes:
            continue
        if first is None:
            first = msg.t_ns
        due = msg.t_ns - first + lead_ns
        if due > clock.now_ns():
            await clock.advance(due - clock.now_ns())
        await publish(msg)
        sent += 1
    return sent


def cmd_replay(args: argparse.Namespace) -> int:
    return asyncio.run(_replay(args))


async def _replay(args: argparse.Namespace) -> int:
    from emulator.interrupt import Interrupts, interrupted_line
    from emulator.recorder import read_header
    from emulator.transports import listen

    read_header(args.file)
    planes = ("board", "control") if args.plane == "all" else (args.plane,)
    last_ns: list[int] = []  # the sim time of the last message published (where an interrupt stopped)
    sent = [0]

    async def publish(msg: Message) -> None:
        await link.publish(msg)
        last_ns[:] = [msg.t_ns]
        sent[0] += 1

    intr = Interrupts()
    task = asyncio.current_task()
    async with await listen(args.to) as link:
        intr.install(lambda reason: task.cancel() if task is not None else None)
        _err(f"flatsat replay: {args.file} -> {link.url} at x{args.speed:g} ({args.plane} plane); "
             "Ctrl-C to stop")
        if args.plane == "control":  # (the recording keeps what both planes carried once, under board)
            _err("flatsat replay: the control plane's own messages only (truth.sample, control events: watch them "
                 "with flatsat monitor URL --truth); the telemetry both planes carried is on --plane board or all")
        try:
            await replay(args.file, publish, speed=args.speed, planes=planes, wait_s=args.wait)
        except asyncio.CancelledError:
            if intr.signum is None:
                raise
        finally:
            intr.remove()
    if intr.signum is not None:
        _err(interrupted_line("replay", intr, last_ns[0] / NS_PER_S if last_ns else 0.0)
             + f", {sent[0]} messages published")
        return intr.exit_code or 130
    _err(f"flatsat replay: {sent[0]} messages published")
    return 0


__all__ = ["add_export_arguments", "add_plot_arguments", "add_replay_arguments", "add_test_arguments", "replay",
           "series_from_recording", "write_csv"]
