"""The ``flatsat`` command: a table of subcommands, each loaded only when it runs.

Every subcommand is a :class:`Command`: its name, its help, and two ``module:function`` references, one that adds
its arguments to its parser and one that runs it. ``emulator`` declares its own (run, demo, monitor, console,
orbit) below; other packages add theirs through the entry-point group ``flatsat.commands`` (hil adds test,
replay, plot, export and campaign), so emulator never imports hil. Only the module of the command that runs is
imported, and the entry points are read only when a command is not one of emulator's or the whole list is
asked for: ``flatsat --version`` and ``flatsat run --help`` load nothing heavy.

Exit codes of every command (emulator.interrupt): 0 done, 1 a test failed, 2 a set-up error, 128 + the signal
number when interrupted (141 when the output's reader went away, as ``| head`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from emulator import __version__

#: entry-point group through which other packages add subcommands (an object: a Command or a list of them)
ENTRY_POINT_GROUP = "flatsat.commands"
#: numpy's OpenBLAS starts one thread per core when numpy is imported, and they spin for a while: the emulator's
#: matrices are 7x7 to a few hundred elements, which OpenBLAS computes on one thread anyway (the same results), so
#: those threads only take CPU (~0.05-0.1 s of a start on a 2-core machine) from the run and from its neighbours.
#: Set for flatsat's process (and the boards and workers it starts) before numpy loads; a value already set wins.
BLAS_THREADS_ENV = {"OPENBLAS_NUM_THREADS": "1"}
#: SIGPIPE's number on POSIX: a command whose output's reader went away exits 128 + SIGPIPE, as a shell reports it
SIGPIPE = 13


@dataclass(frozen=True)
class Command:
    """One ``flatsat`` subcommand. ``arguments`` and ``run`` are ``"module:function"`` references."""

    name: str
    help: str
    arguments: str  #: function(parser) adding the command's arguments
    run: str  #: function(argparse.Namespace) -> exit code
    description: str = ""

    def load(self, attr: str) -> Callable[..., Any]:
        module, _, func = getattr(self, attr).partition(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


COMMANDS: tuple[Command, ...] = (
    Command("run", "run the emulator from a config file", "emulator.run_command:add_run_arguments",
            "emulator.run_command:cmd_run",
            "Run the emulator: the board plane and control plane listen on the configured URLs; a board connects "
            "to the board URL."),
    Command("demo", "software-only demo: emulator + reference board over ZeroMQ, a few orbits",
            "emulator.run_command:add_demo_arguments", "emulator.run_command:cmd_demo",
            "Start the emulator and the reference board controller as a separate process over ZeroMQ on loopback, "
            "fast-forward a few orbits in lockstep, then print a summary and write a plot."),
    Command("monitor", "live table of the telemetry published at a URL", "emulator.monitor:add_arguments",
            "emulator.monitor:run",
            "Subscribe to a board-plane or control-plane URL and show the latest value of every telemetry field: a "
            "live table on a terminal (as many rows as fit; --topic narrows it, --once prints all), lines or JSON "
            "otherwise. Rails and heaters show by name."),
    Command("console", "bench console in the browser: see and steer a running emulator live, or play a recording "
                       "back", "emulator.console.app:add_arguments", "emulator.console.app:run",
            "Serve a web page (loopback only by default) that shows the emulated satellite live from its control "
            "plane (power, rails, thermal, accelerator, radiation, orbit, clock, links, plots of any telemetry "
            "field) and steers it (clock, rails, heaters, faults), or plays a recording back with a time slider."),
    Command("orbit", "eclipses, beta angle and passes of an orbit", "emulator.orbit_report:add_arguments",
            "emulator.orbit_report:run",
            "Propagate an orbit (TLE, elements, or sun-synchronous by altitude and LTAN) and print eclipses, orbits "
            "and a summary."),
)


def plugin_commands() -> list[Command]:
    """Subcommands other installed packages declare in the ``flatsat.commands`` entry-point group."""
    from importlib.metadata import entry_points

    out: list[Command] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the command away
            logging.getLogger("flatsat").warning("flatsat command plugin %s (%s) cannot load: %s", ep.name,
                                                 ep.value, exc)
            continue
        out.extend(obj if isinstance(obj, (list, tuple)) else [obj])
    return out


def _first_command(argv: Iterable[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


class FlatsatParser(argparse.ArgumentParser):
    """The top-level parser; ``command_parsers``: each command's own (an option a command does not know is
    reported by that command's parser, with its usage and the option meant)."""

    command_parsers: dict[str, argparse.ArgumentParser]


def unknown_options(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """The error for arguments ``parser`` does not know: each unknown option with the closest one it has."""
    import re

    from emulator.errors import suggest

    known = sorted(set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", parser.format_help())))
    hints = "".join(suggest(a.split("=")[0], known) for a in extra if a.startswith("-"))
    return f"unrecognized arguments: {' '.join(extra)}{hints}"


def build_parser(argv: list[str] | None = None) -> FlatsatParser:
    """The parser, with the arguments of the command named in ``argv`` only (every command's if None)."""
    parser = FlatsatParser(
        prog="flatsat",
        description="Hardware-in-the-loop emulator for AI-compute satellites: power bus, thermal, "
                    "accelerator board and radiation, over ZeroMQ or serial.",
        epilog="Run 'flatsat COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"flatsat {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    wanted = _first_command(argv) if argv is not None else None
    if argv is not None and wanted is None and "--version" in argv:
        return parser  # nothing but the version: no command table needed
    commands = list(COMMANDS)
    if wanted not in {c.name for c in commands}:  # a plugin's command, or the whole list
        commands += [c for c in plugin_commands() if c.name not in {x.name for x in commands}]
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.command_parsers = {}
    for cmd in commands:
        p = parser.command_parsers[cmd.name] = sub.add_parser(cmd.name, help=cmd.help,
                                                               description=cmd.description or cmd.help)
        if argv is None or cmd.name == wanted:  # only the command that runs loads its module
            cmd.load("arguments")(p)
            p.set_defaults(func=lambda args, c=cmd: c.load("run")(args))
    return parser


def main(argv: list[str] | None = None) -> int:
    from emulator.errors import EmulatorError

    argv = sys.argv[1:] if argv is None else list(argv)
    for key, value in BLAS_THREADS_ENV.items():
        os.environ.setdefault(key, value)
    gc.disable()  # start-up creates thousands of long-lived objects: collecting while they are made only costs time
    try:
        parser = build_parser(argv)
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's own parser: its usage, and the option meant
            own = getattr(parser, "command_parsers", {}).get(getattr(args, "command", None) or "", parser)
            own.error(unknown_options(own, extra))
    finally:
        gc.enable()
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
    except BrokenPipeError:  # the reader went away (``flatsat monitor ... | head``): stop quietly, as on SIGPIPE
        with contextlib.suppress(OSError):  # the interpreter's own flush at exit must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + SIGPIPE
    except BaseException as exc:  # a second signal cancelled the command (loaded only by commands that use it)
        interrupt = sys.modules.get("emulator.interrupt")
        code = interrupt.forced_exit(args.command, exc) if interrupt is not None else None
        if code is None:
            raise
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
