"""What flatsat's commands print on a terminal: banner, progress bar, summary table, recording line.

Shared by ``flatsat run`` / ``demo`` (emulator.run_command) and ``flatsat test`` (hil.cli). rich is imported only
when something is drawn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.clock import NS_PER_S

#: the width of tables and lines printed when the output is not a terminal (a CI log, a file, a pipe): rich would
#: take 80 columns and cut commands and signal names; a log reader scrolls sideways instead
PIPED_WIDTH = 200


def console(**kwargs: Any) -> Any:
    """A rich Console (``kwargs`` as rich takes them): the terminal's width on a terminal, PIPED_WIDTH columns
    otherwise. When the reader goes away (``flatsat orbit | head``) it raises BrokenPipeError, which every command
    answers with 141 as on SIGPIPE (emulator.cli); rich's own answer is to exit 1."""
    from rich.console import Console

    class PipedConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    out = PipedConsole(**kwargs)
    if not out.is_terminal and out.width < PIPED_WIDTH:
        out = PipedConsole(width=PIPED_WIDTH, **kwargs)
    return out


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
        text += (f"; CUT at sim t={fmt_hms(recorder.capped_at_ns / NS_PER_S)} by record.max_mb "
                 f"({recorder.max_bytes / 1e6:g} MB): {recorder.dropped:,} later messages are not in it "
                 "(--record-max-mb, or a lower --truth-rate)")
    return text


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def add_truth_sampler(emu: Any, series: Any, every_s: float) -> Callable[[], None]:
    """Observe ``emu`` with :func:`truth_sampler` (as a timed observer: the steps between two looks run in one
    batch); returns the function that removes it."""
    sample, due_ns = truth_sampler(emu, series, every_s)
    return emu.add_observer(sample, due_ns=due_ns)  # type: ignore[no-any-return]


def truth_sampler(emu: Any, series: Any, every_s: float) -> tuple[Callable[[int], None], Callable[[], int]]:
    """An observer that appends what the summary and the plot show of the ground truth to ``series`` about every
    ``every_s`` of sim time, looking 5 times as often and keeping each window's min and max (spikes show); and
    the sim time of its next look (``Emulator.add_observer(due_ns=...)``).

    A fleet is sampled as fleet statistics (mean, min, max over the members) and looked at once a row: its truth
    tree costs milliseconds to build.
    """
    from emulator.plotting import FLEET_SECTIONS, FLEET_SUMMARY_PATTERNS, PANELS, SUMMARY_PATTERNS
    from emulator.series import EnvelopeSampler, FleetReader, Series, flatten

    fleet = emu.model.fleet_size > 1
    patterns = [*(p for _, _, pats in PANELS for p in pats), *(FLEET_SUMMARY_PATTERNS if fleet else SUMMARY_PATTERNS)]
    every_ns = max(emu.step_ns, round(every_s * NS_PER_S))
    first = emu.model.truth()
    if fleet:
        fine_ns = every_ns
        reader = FleetReader(emu.model.fleet_size, patterns, FLEET_SECTIONS)
        sampler = EnvelopeSampler(series, every_ns, [], first, reader=reader)
    else:
        fine_ns = max(emu.step_ns, every_ns // 5)
        probe = Series()
        probe.append(0, flatten(first))
        sampler = EnvelopeSampler(series, every_ns, probe.match(patterns), first, rows="keys")
    next_ns = [0]

    def sample(t_ns: int) -> None:
        if t_ns >= next_ns[0]:
            next_ns[0] = t_ns + fine_ns
            sampler.observe(t_ns, emu.model.truth())

    return sample, lambda: next_ns[0]


@contextlib.contextmanager
def progress(emu: Any, duration_s: float | None, quiet: bool):  # type: ignore[no-untyped-def]
    out = None if quiet else console(stderr=True)
    if out is None or not out.is_terminal:  # a bar is for a person at a terminal, not a log or a file
        yield
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]sim[/] {task.fields[simtime]}"), BarColumn(),
                        TextColumn("{task.percentage:>5.1f}%"),
                        TextColumn("x{task.fields[speed]} real time  lag {task.fields[lag]}"),
                        TextColumn("wall"), TimeElapsedColumn(), transient=False, console=out)
    total = duration_s * NS_PER_S if duration_s else None
    task = progress.add_task("run", total=total, simtime="0 s", speed="-", lag="0 ms")
    next_ns = [0]

    def update(t_ns: int) -> None:
        if t_ns < next_ns[0]:
            return
        st = emu.clock.stats
        # aim for ~20 updates per wall second whatever the speed
        rtf = emu.clock.realtime_factor()
        steps_per_wall_s = rtf * NS_PER_S / emu.step_ns
        next_ns[0] = t_ns + max(1, min(10_000, int(steps_per_wall_s / 20))) * emu.step_ns
        progress.update(task, completed=t_ns, simtime=fmt_hms(t_ns / NS_PER_S), speed=f"{rtf:,.0f}",
                        lag=f"{st.lag_ns / 1e6:.1f} ms")

    with progress:
        remove = emu.add_observer(update, due_ns=lambda: next_ns[0])
        try:
            yield
        finally:
            remove()
            update(emu.clock.now_ns())


def fmt_hms(s: float) -> str:
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}"


def board_summary(emu: Any) -> str:
    """Which boards said hello; or that none did, so the accelerator idled (nobody gave it work)."""
    seen = emu.stats.boards_seen
    if seen:
        return ", ".join(f"{name} {version}".strip() for name, version in sorted(seen.items()))
    if not any(str(c.spec.plane) == "board" for c in emu.interface.commands):
        return "none needed: the model takes no board command (e.g. a cluster with no bound member)"
    bound = getattr(emu.model, "bound", None)  # a fleet: only its bound members wait for a board
    if bound:
        names = getattr(emu.model, "member_names", None)
        who = ", ".join(f"{k} ({names[k]})" if names else str(k) for k in bound)
        what = "member's accelerator idles" if len(bound) == 1 else "members' accelerators idle"
        return f"no board connected: the bound {what} (member {who}; the others follow the built-in policy)"
    return "no board connected: the accelerator idles"


def print_summary(emu: Any, series: Any, wall_s: float | None = None) -> None:
    from rich.table import Table

    from emulator.plotting import FLEET_SUMMARY_PATTERNS, summary_rows

    out = console(stderr=True)
    st = emu.clock.stats
    head = Table(title="run", show_header=False)
    head.add_row("sim time", fmt_hms(emu.clock.now_ns() / NS_PER_S))
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
    out.print(head)
    n = emu.model.fleet_size
    rows = summary_rows(series, patterns=None if n == 1 else FLEET_SUMMARY_PATTERNS)
    if rows:
        table = Table(title="spacecraft" if n == 1 else f"fleet of {n}: min and max over the members, mean and end "
                      "of the fleet mean")
        for col in ("signal", "min", "mean", "max", "end"):
            table.add_column(col, justify="right" if col != "signal" else "left")
        for row in rows:
            table.add_row(*row)
        out.print(table)


def plural(n: float, noun: str) -> str:
    """'1 orbit', '3 orbits', '0.5 orbits'."""
    return f"{n:g} {noun}" + ("" if n == 1 else "s")
