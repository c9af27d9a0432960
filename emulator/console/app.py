"""``flatsat console``: serve the bench console for a running emulator's control plane, or for a recording."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import sys
from typing import Any

#: what the console needs beyond flatsat's own dependencies (the ``console`` extra)
NEEDS = {"aiohttp": "aiohttp", "plotly": "plotly"}
INSTALL_HINT = "pip install 'flatsat[console]'   (or: pip install aiohttp plotly)"
DEFAULT_LISTEN = "127.0.0.1:8800"
TOKEN_ENV = "FLATSAT_CONSOLE_TOKEN"
#: the console is an observer: it yields the CPU to the emulator (and a board) when they compete for it. "idle":
#: Linux SCHED_IDLE, only CPU time nobody else wants (elsewhere nice IDLE_NICE); or a nice increment
DEFAULT_NICE = "idle"
IDLE_NICE = 19


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", nargs="?", metavar="CONTROL_URL",
                   help="the emulator's control-plane URL, e.g. zmq+tcp://127.0.0.1:5560 (what `flatsat run` prints)")
    p.add_argument("--recording", metavar="FILE", help="play a recording back instead (time slider, no steering)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help="where the page is served (default %(default)s: this machine only; port 0: any free port). "
                        "Any other address needs a token (--token, or one is made up and printed)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"access token the page must present (?token=..., then a cookie); default ${TOKEN_ENV}")
    p.add_argument("--max-hz", type=_max_hz, default=None, metavar="HZ",
                   help="each telemetry topic at most this many times a wall second, sent by the emulator to this "
                        "console alone (telemetry.feed; default 10); 0: subscribe to everything the emulator "
                        "publishes and decimate here (full-resolution plots of a fast-forward, at a CPU cost)")
    p.add_argument("--nice", type=_nice, default=DEFAULT_NICE, metavar="N|idle",
                   help="run at a lower CPU priority, so that on a busy machine watching never takes CPU time the "
                        "emulator needs: 'idle' (default; Linux: only CPU time nobody else wants, elsewhere nice "
                        f"{IDLE_NICE}), N: this much lower (nice N), 0: as the emulator")


def _nice(text: str) -> str | int:
    if text == "idle":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give 'idle' or a whole number 0-19") from None
    if not 0 <= n <= 19:
        raise argparse.ArgumentTypeError(f"{text}: give 'idle' or a whole number 0-19")
    return n


def lower_priority(nice: str | int) -> str:
    """Lower this process's CPU priority as ``--nice`` says; what it got, in words (a failure is not fatal: the
    console still works, at the priority it has)."""
    if nice == "idle" and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError:
            pass
    n = IDLE_NICE if nice == "idle" else int(nice)
    if n > 0 and hasattr(os, "nice"):
        try:
            os.nice(n)
            return f"nice {n}"
        except OSError as exc:
            return f"as it was (nice {n}: {exc.strerror})"
    return "as it was"


def _max_hz(text: str) -> float:
    try:
        hz = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (hz == 0 or 0 < hz <= 1000):
        raise argparse.ArgumentTypeError(f"{text}: give a rate in Hz above 0 and at most 1000, or 0 (subscribe to "
                                         "everything)")
    return hz


def missing_packages() -> list[str]:
    return [pkg for mod, pkg in NEEDS.items() if importlib.util.find_spec(mod) is None]


def access(host: str, token: str | None) -> tuple[str | None, bool]:
    """(the token pages must present, whether ``host`` is loopback): any other address gets a token, made up
    here if none was given."""
    import secrets

    from emulator.transports.url import is_loopback_host

    loopback = is_loopback_host(host)
    if not loopback and not token:
        token = secrets.token_urlsafe(18)
    return token or None, loopback


def reach_warning(recording: bool) -> str:
    """What a non-loopback address lets others do: steer a live run, or watch a recording (never steered)."""
    what = "watch the recording" if recording else "watch and steer the emulator"
    return (f"anyone who reaches it and has the token can {what}, so every request must carry the token above "
            "(keep it secret; HTTP is not encrypted)")


def announcement(args: argparse.Namespace, host: str, port: int, token: str | None, loopback: bool,
                 priority: str) -> str:
    """What the console prints once it serves: what it shows, the URLs to open, and who else can reach it."""
    what = f"recording {args.recording}" if args.recording else f"control plane {args.url}"
    urls = page_urls(host, port, token)
    lines = [f"{what} (CPU priority: {priority})", f"open {urls[0]}"]
    lines += [f"  or {url}" for url in urls[1:]]
    if not loopback:
        lines.append(f"listening on {host}, not loopback: {reach_warning(bool(args.recording))}")
    return "\n".join(f"flatsat console: {line}" for line in lines)


def page_urls(host: str, port: int, token: str | None) -> list[str]:
    """The URLs a user can open: a wildcard address (0.0.0.0, ::) is no address to browse to, so this machine's
    name and addresses instead (a placeholder when none is known), then the loopback URL for this machine."""
    query = f"?token={token}" if token else ""
    wildcard = host in ("0.0.0.0", "::")
    if not wildcard:
        hosts = [host]
    else:
        family = socket.AF_INET6 if host == "::" else socket.AF_INET
        hosts = machine_names(family) or ["<this machine's address>"]
        hosts.append("::1" if family == socket.AF_INET6 else "127.0.0.1")
    return [f"http://{f'[{h}]' if ':' in h else h}:{port}/{query}" for h in hosts]


def machine_names(family: socket.AddressFamily) -> list[str]:
    """This machine's host name (when it resolves to an address other machines can use) and its non-loopback
    addresses of ``family``; empty when none can be found (no network, a name that does not resolve)."""
    import ipaddress

    def usable(address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)

    name = socket.gethostname()
    addresses: list[str] = []
    with contextlib.suppress(OSError, UnicodeError):
        for info in socket.getaddrinfo(name, None, family, socket.SOCK_STREAM):
            address = str(info[4][0])
            if usable(address) and address not in addresses:
                addresses.append(address)
    names = [name] if addresses else []
    # the address of the route out (a UDP connect sends nothing): found even when the host name does not resolve
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"  # documentation ranges: never reached
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.connect((probe, 9))
        address = str(udp.getsockname()[0])
        if usable(address) and address not in addresses:
            addresses.append(address)
    return names + addresses


def run(args: argparse.Namespace) -> int:
    if args.url and args.recording:
        print("flatsat console: give a CONTROL_URL (a running emulator) or --recording FILE, not both",
              file=sys.stderr)
        return 2
    if not args.url and not args.recording:
        print("flatsat console: give what to show: a CONTROL_URL (a running emulator's control plane, as "
              "`flatsat run` prints it, e.g. zmq+tcp://127.0.0.1:5560) or --recording FILE (a recording to play "
              "back)", file=sys.stderr)
        return 2
    missing = missing_packages()
    if missing:
        print(f"flatsat console needs {', '.join(missing)}, which is not installed; install it with:\n"
              f"  {INSTALL_HINT}", file=sys.stderr)
        return 2
    from emulator.errors import EmulatorError, InvalidTransportURL
    from emulator.transports.url import split_host_port

    try:
        host, port = split_host_port(args.listen, args.listen)
    except InvalidTransportURL as exc:
        print(f"flatsat console: --listen: {exc}", file=sys.stderr)
        return 2
    token, loopback = access(host, args.token or None)
    priority = lower_priority(getattr(args, "nice", 0))
    try:
        return asyncio.run(_serve(args, host, port, token, loopback, priority))
    except EmulatorError as exc:
        print(f"flatsat console: {exc}", file=sys.stderr)
        return 2


async def _serve(args: argparse.Namespace, host: str, port: int, token: str | None, loopback: bool,
                 priority: str = "as it was") -> int:
    from emulator.console.server import ConsoleServer
    from emulator.console.sources import LiveSource, RecordingSource
    from emulator.console.state import ConsoleState
    from emulator.errors import ConfigError

    state = ConsoleState()
    source: Any
    if args.recording:
        source = RecordingSource(args.recording, state)
    else:
        from emulator.console.sources import FEED_HZ

        hz = FEED_HZ if getattr(args, "max_hz", None) is None else args.max_hz
        source = LiveSource(args.url, state, feed_hz=hz or None)
    # listen first: a busy port is said at once, not after a large recording has been read; pages that come
    # while it is read are told to wait (503)
    loading = f"still reading the recording {args.recording}; reload in a moment" if args.recording else None
    server = ConsoleServer(source, token=token, loopback=loopback, loading=loading)
    try:
        await server.start(host, port)
    except OSError as exc:
        print(f"flatsat console: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.recording:
            print(f"flatsat console: reading {args.recording} ...", file=sys.stderr)
            try:
                await asyncio.to_thread(source.load)
            except OSError as exc:
                raise ConfigError(f"{args.recording}: {exc.strerror or exc}", field="recording") from None
        await source.start()
    except BaseException:
        await server.aclose()
        raise
    server.loading = None
    print(announcement(args, host, server.port, token, loopback, priority), file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()
        await source.aclose()
    return 0
