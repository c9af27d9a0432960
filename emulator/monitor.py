"""``flatsat monitor``: the latest telemetry published at a URL, as a live table, as lines, or as JSON lines.

On a terminal the default is a live table; when stdout is a pipe or a file it is one line per message
(``--format lines``), or one JSON object per message (``--format json``: ``{"t_s", "topic", "fields"}``),
flushed as they come, so ``flatsat monitor URL | grep bus_v`` works. A list of named items (``rails``,
``heaters``) is shown by name (``rails.payload.current_a``), not by index. The live table shows as many
rows as the terminal has and says how many it left out; ``--topic`` narrows it (repeatable, glob
patterns), and ``--once`` prints one full snapshot, however long.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any, TextIO

from emulator.clock import NS_PER_S
from emulator.errors import TransportBrokenError, TransportClosedError, suggest
from emulator.series import flatten

FORMATS = ("table", "lines", "json")


def by_name(tree: Any) -> Any:
    """Lists of maps that all carry a ``name`` become maps keyed by it (rails, heaters), recursively."""
    if isinstance(tree, Mapping):
        return {k: by_name(v) for k, v in tree.items()}
    if isinstance(tree, list) and tree and all(isinstance(v, Mapping) and isinstance(v.get("name"), str)
                                               for v in tree):
        names = [v["name"] for v in tree]
        if len(set(names)) == len(names):
            return {v["name"]: by_name({k: x for k, x in v.items() if k != "name"}) for v in tree}
    if isinstance(tree, list):
        return [by_name(v) for v in tree]
    return tree


def fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload flattened for people: values by dotted name (strings and bools kept as they are)."""
    named = by_name(payload)
    out: dict[str, Any] = dict(flatten(named))
    _strings(named, "", out)
    return dict(sorted(out.items()))


def _strings(tree: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if isinstance(v, (str, bool)):
                out[f"{prefix}{k}"] = v
            else:
                _strings(v, f"{prefix}{k}.", out)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _fmt_t(t_ns: int) -> str:
    s = t_ns // NS_PER_S
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


async def monitor(url: str, duration_s: float | None = None, once: bool = False, truth: bool = False, *,
                  fmt: str | None = None, topics: list[str] | None = None, out: TextIO | None = None) -> int:
    """Subscribe at ``url`` and show what comes; returns the exit code."""
    from emulator.transports import connect

    out = out or sys.stdout
    fmt = fmt or ("table" if out.isatty() else "lines")
    patterns = topics or ["*"]
    latest: dict[str, dict[str, Any]] = {}
    t_ns = 0

    seen: set[str] = set()
    matched: set[str] = set()
    clocks = 0

    def wanted(topic: str) -> bool:
        nonlocal clocks
        seen.add(topic)
        ok = (topic != "truth.sample" or truth) and any(fnmatch.fnmatchcase(topic, p) for p in patterns)
        if ok:
            matched.add(topic)
        if topic == "sim.clock":
            clocks += 1
            if clocks == 3:  # a whole cycle of topics has come: say what was asked for and never comes
                _audit(url, topics, truth, seen, matched)
        return ok

    async with await connect(url) as link:
        if fmt == "table":
            code = await _table(link, url, duration_s, once, wanted, out)
            if code == 2:
                _audit(url, topics, truth, seen, matched)
            return code

        async def stream() -> None:
            nonlocal t_ns
            async for msg in _messages(link, once):
                t_ns = max(t_ns, msg.t_ns)
                if not wanted(msg.topic):
                    continue
                values = fields(msg.payload)
                if once:
                    latest[msg.topic] = values
                    continue
                _emit(out, fmt, msg.t_ns, msg.topic, values)

        try:
            async with asyncio.timeout(duration_s):
                await stream()
        except TimeoutError:
            pass
        for topic in sorted(latest):
            _emit(out, fmt, t_ns, topic, latest[topic])
    if once and not latest:
        _audit(url, topics, truth, seen, matched)
        return 2
    return 0


def _audit(url: str, topics: list[str] | None, truth: bool, seen: set[str], matched: set[str]) -> None:
    """Tell (stderr) what the command line asks for that this URL does not send: patterns no topic matches,
    ground truth on a plane that does not carry it."""
    here = ", ".join(sorted(seen - {"truth.sample"})) or "(none yet)"
    if topics and not matched - {"truth.sample"}:
        print(f"flatsat monitor: no topic at {url} matches {', '.join(map(repr, topics))}{suggest(topics[0], seen)}; "
              f"its topics: {here}", file=sys.stderr)
    if truth and "truth.sample" not in seen:
        print(f"flatsat monitor: --truth: {url} sends no truth.sample (ground truth comes on the control plane "
              "only; give the control plane's URL)", file=sys.stderr)


async def _messages(link: Any, once: bool) -> AsyncIterator[Any]:
    """Every message from ``link``; with ``once``, until a whole cycle of topics has come (the one between two
    sim.clock messages of different sim times)."""
    first_clock: int | None = None
    while True:
        try:
            msg = await link.recv()
        except TransportClosedError:
            return
        except TransportBrokenError:  # the run ended (or the emulator stopped): what there was to watch is over
            print(f"flatsat monitor: the emulator at {link.url.label} went away (its run ended, or it was "
                  "stopped); done", file=sys.stderr)
            return
        if msg.topic == "sim.clock" and once:
            if first_clock is not None and msg.t_ns > first_clock:
                return
            first_clock = msg.t_ns if first_clock is None else first_clock
        yield msg


def _emit(out: TextIO, fmt: str, t_ns: int, topic: str, values: Mapping[str, Any]) -> None:
    if fmt == "json":
        out.write(json.dumps({"t_s": t_ns / NS_PER_S, "topic": topic, "fields": values}) + "\n")
    else:
        out.write(f"{_fmt_t(t_ns)} {topic} " + " ".join(f"{k}={_fmt(v)}" for k, v in values.items()) + "\n")
    out.flush()


async def _table(link: Any, url: str, duration_s: float | None, once: bool, wanted: Any, out: TextIO) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console(file=out)
    latest: dict[str, dict[str, Any]] = {}
    t_ns = 0

    def render(limit: int | None) -> Table:
        rows = [(topic, key, _fmt(value)) for topic in sorted(latest) for key, value in latest[topic].items()]
        hidden = 0
        if limit is not None and len(rows) > limit:
            hidden = len(rows) - limit
            rows = rows[:limit]
        more = f"  ({hidden} more rows: narrow with --topic, or --once for all)" if hidden else ""
        table = Table(title=f"flatsat monitor {url}  sim t = {_fmt_t(t_ns)}{more}")
        table.add_column("topic")
        table.add_column("field")
        table.add_column("value", justify="right")
        for row in rows:
            table.add_row(*row)
        return table

    def live_limit() -> int:
        return max(1, console.size.height - 7)  # title, header, borders

    with Live(render(live_limit()), console=console, refresh_per_second=4, transient=once) as live:
        async def loop() -> None:
            nonlocal t_ns
            async for msg in _messages(link, once):
                t_ns = max(t_ns, msg.t_ns)
                if not wanted(msg.topic):
                    continue
                latest[msg.topic] = fields(msg.payload)
                live.update(render(live_limit()))

        try:
            async with asyncio.timeout(duration_s):
                await loop()
        except TimeoutError:
            pass
    if once:
        if not latest:
            return 2  # nothing the patterns asked for came (the caller says what came instead)
        console.print(render(None))
    return 0


def add_arguments(p: Any) -> None:
    """``flatsat monitor`` arguments."""
    from emulator.arguments import duration_arg

    p.add_argument("url", help="e.g. zmq+tcp://127.0.0.1:5560 (control plane sees everything)")
    p.add_argument("--duration", type=duration_arg, default=None, help="stop after this much wall time")
    p.add_argument("--once", action="store_true", help="print one snapshot after a full second of telemetry and exit")
    p.add_argument("--truth", action="store_true", help="also show the ground truth stream (truth.sample, control "
                                                         "plane only; long)")
    p.add_argument("--format", choices=["table", "lines", "json"],
                   help="table (live, the default on a terminal), lines (one per message, the default when stdout "
                        "is not a terminal) or json (one object per message)")
    p.add_argument("--topic", action="append", metavar="PATTERN",
                   help="only topics matching this glob, e.g. 'eps.*' (repeatable)")


def run(args: Any) -> int:
    """``flatsat monitor``."""
    return asyncio.run(monitor(args.url, args.duration, args.once, args.truth, fmt=args.format,
                               topics=args.topic or None))
