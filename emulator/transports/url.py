"""Transport URLs: the grammar, the option table of every scheme, and strict parsing to :class:`TransportURL`.

Grammar::

    <kind>[+<carrier>]://<location>[?<option>=<value>&...]

    loop://<channel>                       in-process (channel "default" when empty)
    zmq+tcp://<host>:<port>                ZeroMQ over TCP (port 0: ephemeral)
    zmq+ipc://<path>                       ZeroMQ over a Unix domain socket
    zmq+inproc://<name>                    ZeroMQ inside one process (one shared Context)
    serial://<device>                      a serial device: /dev/ttyUSB0, COM3, a pty path
    serial+socket://<host>:<port>          pyserial socket:// (ser2net, TCP-to-serial bridges)
    serial+loop://                         pyserial loop:// (single-ended echo; functional tests)
    serial+fd://<n>                        an open descriptor this process inherited (a pty master)

Parsing rules (house style B4): the scheme is lower-cased and split at ``+`` into kind and carrier;
``location = netloc + path`` with case preserved (never ``hostname``, which lower-cases ``COM3``);
the query is parsed strictly: a repeated key, an unknown key, a missing ``=`` or a value of the wrong
type raises :class:`InvalidTransportURL` naming the option, what is valid, and a did-you-mean hint.
``str(url)`` is canonical (sorted query keys, canonical values) and parses back to an equal URL.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from emulator.errors import InvalidTransportURL, suggest

GRAMMAR = "<kind>[+<carrier>]://<location>[?<option>=<value>&...]"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One query option: how to parse and print its value, its default, and which carriers accept it."""

    name: str
    kind: str  #: the expected type, as shown in errors ("int >= 1", "one of N, E, O", ...)
    parse: Callable[[str], Any]  #: str -> value; raises ValueError with a short reason
    format: Callable[[Any], str]
    default: Any = None
    doc: str = ""
    carriers: tuple[str | None, ...] | None = None  #: None: every carrier of the kind


def _int_option(name: str, default: int | None, doc: str, lo: int | None = None, hi: int | None = None,
                carriers: tuple[str | None, ...] | None = None) -> Option:
    if lo is not None and hi is not None:
        kind = f"int in {lo}..{hi}"
    elif lo is not None:
        kind = f"int >= {lo}"
    else:
        kind = "int"

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError(f"not an integer: {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{value} is out of range")
        return value

    return Option(name, kind, parse, str, default, doc, carriers)


def _float_option(name: str, default: float | None, doc: str, lo: float = 0.0, lo_open: bool = False,
                  hi: float | None = None) -> Option:
    kind = f"number {'>' if lo_open else '>='} {lo:g}" if hi is None else f"number in {lo:g}..{hi:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < lo or (lo_open and value == lo) or (hi is not None and value > hi):
            raise ValueError(f"{text} is out of range")
        return value

    def fmt(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else repr(float(value))

    return Option(name, kind, parse, fmt, default, doc)


def _bool_option(name: str, default: bool, doc: str) -> Option:
    def parse(text: str) -> bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"not a boolean: {text!r}")

    return Option(name, "bool (1/0, true/false, yes/no, on/off)", parse, lambda v: "1" if v else "0", default, doc)


def _choice_option(name: str, choices: Mapping[str, Any], default: Any, doc: str,
                   fold_case: bool = False) -> Option:
    def parse(text: str) -> Any:
        key = text.upper() if fold_case else text
        if key not in choices:
            raise ValueError(f"{text!r} is not a valid choice")
        return choices[key]

    def fmt(value: Any) -> str:
        for key, val in choices.items():
            if val == value:
                return key
        raise ValueError(f"{value!r} is not a valid choice")

    return Option(name, "one of " + ", ".join(choices), parse, fmt, default, doc)


def _str_option(name: str, doc: str, carriers: tuple[str | None, ...] | None = None) -> Option:
    def parse(text: str) -> str:
        if not text:
            raise ValueError("empty value")
        return text

    return Option(name, "non-empty string", parse, str, None, doc, carriers)


#: Options any URL accepts.
COMMON_OPTIONS: tuple[Option, ...] = (
    _str_option("name", "a label for the link in logs and reports"),
    # 5000/s: a board on the bench sends tens of requests a second, the fastest lockstep boards shipped here
    # under 2,000, and one waiting for each reply cannot pass ~1/RTT (~5,000); answering a flood at this rate
    # costs ~30 % of a core, beyond it is dropped before it is decoded (docs/reliability.md).
    _float_option("peer_rate_hz", 5000.0, "listen(): requests per second each peer may send (0: no limit); "
                  "over it requests are dropped and counted (rate_limited), the first of each second answered"),
    _int_option("peer_burst", 2000, "listen(): requests a peer may send at once above peer_rate_hz", lo=1),
)


@dataclass(frozen=True)
class Scheme:
    """What one kind accepts: its carriers and its options."""

    kind: str
    carriers: tuple[str | None, ...]
    options: tuple[Option, ...]
    doc: str

    def option_table(self) -> dict[str, Option]:
        return {o.name: o for o in (*COMMON_OPTIONS, *self.options)}


SCHEMES: dict[str, Scheme] = {
    "loop": Scheme("loop", (None,), (
        # 1000: the same bound as the ZeroMQ default high-water mark, so loop:// tests see the same drops.
        _int_option("hwm", 1000, "telemetry messages queued per client before publish() drops them", lo=1),
    ), "in-process channel"),
    "zmq": Scheme("zmq", ("tcp", "ipc", "inproc"), (
        # 1000: libzmq's own default SNDHWM/RCVHWM.
        _int_option("hwm", 1000, "ZeroMQ high-water mark (messages) on every socket", lo=1),
        _int_option("cmd_port", None, "TCP port of the request (ROUTER) socket; default: the URL's port + 1 "
                    "(ephemeral when the port is 0)", lo=0, hi=65535, carriers=("tcp",)),
        # 0: a closed link drops what it still holds; the emulator never waits on a dead peer at exit.
        _int_option("linger_ms", 0, "ZeroMQ LINGER when the link closes", lo=0),
        # 5 s: long enough for a loaded CI machine, short enough that a wrong address is reported promptly.
        _float_option("connect_timeout_s", 5.0, "connect(): wait this long for the server's welcome "
                      "(0: do not wait)"),
        _choice_option("drop", {"peer": "peer", "all": "all"}, "peer",
                       "what publish() does when one subscriber is full: 'peer' drops for that subscriber "
                       "only (not counted: libzmq does not report it); 'all' drops the message for everyone "
                       "and counts it in stats.dropped_tx"),
        _str_option("curve_secret", "CurveZMQ secret key of this end (z85, or a file written by "
                    "zmq.auth.create_certificates); required to listen on a non-loopback address"),
        _str_option("curve_public", "CurveZMQ public key of this end (z85 or a file); optional, checked "
                    "against the secret key"),
        _str_option("curve_server", "connect(): the server's CurveZMQ public key (z85 or a file); "
                    "enables CURVE on the client"),
        _str_option("curve_clients", "listen() with curve_secret: the client public keys allowed in: a directory "
                    "of certificates (NAME.key), a file, or z85 keys separated by commas; '*': any client"),
        _str_option("topics", "connect(): subscribe to these topics only (comma-separated); default: every topic"),
        _bool_option("subscribe", True, "connect(): false: the SUB socket takes no telemetry or events (only "
                     "the welcome, for the connection state); a client then asks for a decimated feed with "
                     "telemetry.feed, which arrives beside its replies"),
    ), "ZeroMQ XPUB/ROUTER server, SUB+DEALER client"),
    "serial": Scheme("serial", (None, "socket", "loop", "rfc2217", "fd"), (
        # 115200: the most common default of USB-UART bridges and MCU boot loaders.
        _int_option("baud", 115200, "line rate in bit/s", lo=1),
        _choice_option("parity", {"N": "N", "E": "E", "O": "O"}, "N", "parity bit", fold_case=True),
        _choice_option("stopbits", {"1": 1.0, "1.5": 1.5, "2": 2.0}, 1.0, "stop bits"),
        _int_option("bytesize", 8, "data bits per character", lo=5, hi=8),
        _bool_option("rtscts", False, "RTS/CTS hardware flow control"),
        _bool_option("exclusive", True, "lock the device so a second program cannot open it"),
        _bool_option("pace", False, "pace transmitted bytes at the line rate (ptys ignore the baud rate)"),
        # 1 s: a USB re-enumeration takes ~0.5-2 s; retrying faster only burns syscalls.
        _float_option("reopen_s", 1.0, "seconds between attempts to reopen a device that went away",
                      lo=0.0, lo_open=True),
        # 32 frames: at 115200 baud a 400-byte frame takes 35 ms, so telemetry is never more than ~1 s stale.
        _int_option("hwm", 32, "telemetry frames queued for transmission before publish() drops them", lo=1),
        # test aid: a noisy line without a noisy cable (0.5: beyond it a flip is likelier than not)
        _float_option("ber", 0.0, "bit error rate injected by this end into what it sends and what it receives "
                      "(testing: a noisy line on a clean cable); 0: none", hi=0.5),
        _int_option("ber_seed", 0, "seed of the injected bit errors (the same seed damages the same bit "
                    "positions of each direction's byte stream)", lo=0),
    ), "COBS+CRC framed byte stream through pyserial"),
}


def _fold(options: Mapping[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(dict(sorted(options.items())))


@dataclass(frozen=True, eq=False)
class TransportURL:
    """A parsed, checked, canonical transport address.

    ``options`` holds only the options given (typed); :meth:`get` falls back to the scheme default.
    """

    kind: str  #: registry key: "loop", "zmq", "serial"
    carrier: str | None  #: what follows "+" in the scheme ("tcp", "socket", ...), or None
    location: str  #: netloc + path, case preserved (device path, host:port, channel name)
    options: Mapping[str, Any]  #: typed option values, read-only

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _fold(self.options))

    @property
    def scheme(self) -> str:
        return self.kind if self.carrier is None else f"{self.kind}+{self.carrier}"

    def get(self, name: str) -> Any:
        """The option's value, or its scheme default; a name the scheme does not define raises KeyError."""
        if name in self.options:
            return self.options[name]
        table = SCHEMES[self.kind].option_table()
        return table[name].default

    def replace(self, *, location: str | None = None, **options: Any) -> TransportURL:
        """A copy with another location and/or options set (``None`` removes an option)."""
        merged = dict(self.options)
        for key, value in options.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return TransportURL(self.kind, self.carrier, self.location if location is None else location, merged)

    @property
    def label(self) -> str:
        """The ``name=`` option, or the canonical URL."""
        return str(self.options.get("name") or self)

    def __str__(self) -> str:
        table = SCHEMES[self.kind].option_table() if self.kind in SCHEMES else {}
        # brackets stay literal only around an IPv6 host; anywhere else urlsplit would reject them
        safe = _LOCATION_SAFE + "[]" if _IPV6_HOST_PORT.fullmatch(self.location) else _LOCATION_SAFE
        out = f"{self.scheme}://{quote(self.location, safe=safe)}"
        if self.options:
            parts = []
            for key, value in self.options.items():
                text = table[key].format(value) if key in table else str(value)
                parts.append(f"{key}={quote(text, safe=_VALUE_SAFE)}")
            out += "?" + "&".join(parts)
        return out

    def __repr__(self) -> str:
        return f"TransportURL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransportURL):
            return NotImplemented
        return (self.kind, self.carrier, self.location, dict(self.options)) == (
            other.kind, other.carrier, other.location, dict(other.options))

    def __hash__(self) -> int:
        return hash(str(self))


_LOCATION_SAFE = "/:@!$'()*+,;=~-._"
_IPV6_HOST_PORT = re.compile(r"\[[0-9A-Fa-f:.]+\]:[0-9]+")
_VALUE_SAFE = "/:@!$'()*,;~-._"  # no "+": parse_qsl reads it as a space


def known_kinds() -> list[str]:
    return sorted(SCHEMES)


def parse_transport_url(text: str | TransportURL) -> TransportURL:
    """Parse and check a transport URL.

    Args:
        text: for example ``"zmq+tcp://127.0.0.1:5550?hwm=100"``; a :class:`TransportURL` is returned as is.

    Returns:
        The parsed URL with typed options.

    Raises:
        InvalidTransportURL: bad grammar, unknown kind or carrier, unknown or repeated option, bad value,
            or a location the scheme cannot use.
    """
    if isinstance(text, TransportURL):
        return text
    if not isinstance(text, str):
        raise InvalidTransportURL(f"a transport URL must be a str, got {type(text).__name__}", field="url")
    if "://" not in text:
        raise InvalidTransportURL(
            f"{text!r} is not a transport URL; expected {GRAMMAR}, e.g. zmq+tcp://127.0.0.1:5550, "
            f"serial:///dev/ttyUSB0?baud=921600, loop://board", field="url")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidTransportURL(f"cannot parse {text!r}: {exc}; expected {GRAMMAR}", field="url") from None
    if parts.fragment:
        raise InvalidTransportURL(f"a transport URL has no fragment ('#{parts.fragment}') in {text!r}",
                                  field="url")
    kind, _, carrier_text = parts.scheme.partition("+")
    scheme = SCHEMES.get(kind)
    if scheme is None:
        raise InvalidTransportURL(
            f"unknown transport kind {kind!r} in {text!r}{suggest(kind, SCHEMES)}; known kinds: "
            f"{', '.join(known_kinds())}", field="kind", valid=known_kinds())
    carrier = carrier_text or None
    if carrier not in scheme.carriers:
        shown = [f"{kind}+{c}" if c else kind for c in scheme.carriers]
        raise InvalidTransportURL(
            f"unknown carrier {parts.scheme!r} in {text!r}{suggest(carrier_text, [c or '' for c in scheme.carriers])}"
            f"; valid schemes for {kind}: {', '.join(shown)}", field="carrier", valid=shown)
    location = unquote(parts.netloc + parts.path)
    options = _parse_query(text, parts.query, scheme, carrier)
    url = TransportURL(kind, carrier, location, options)
    return _check_location(url, text)


def _parse_query(text: str, query: str, scheme: Scheme, carrier: str | None) -> dict[str, Any]:
    table = scheme.option_table()
    valid = sorted(n for n, o in table.items() if o.carriers is None or carrier in o.carriers)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidTransportURL(f"bad query {query!r} in {text!r}: every option is <name>=<value>; "
                                  f"valid options: {', '.join(valid)}", field="query", valid=valid) from None
    out: dict[str, Any] = {}
    for key, raw in pairs:
        if key not in valid:
            where = f"{scheme.kind}+{carrier}" if carrier else scheme.kind
            raise InvalidTransportURL(
                f"unknown option {key!r} in {text!r}{suggest(key, valid)}; valid options for {where}: "
                f"{', '.join(valid)}", field=key, valid=valid)
        if key in out:
            raise InvalidTransportURL(f"option {key!r} is given twice in {text!r}", field=key)
        option = table[key]
        try:
            out[key] = option.parse(raw)
        except ValueError as exc:
            raise InvalidTransportURL(f"option {key}={raw!r} in {text!r}: {exc}; expected {option.kind}",
                                      field=key) from None
    return out


def split_host_port(location: str, text: str) -> tuple[str, int]:
    """``"127.0.0.1:5550"`` -> ``("127.0.0.1", 5550)``; ``"[::1]:5550"`` -> ``("::1", 5550)``."""
    host, sep, port_text = location.rpartition(":")
    if not sep or not host or "/" in location:
        raise InvalidTransportURL(f"{text!r} needs <host>:<port>, e.g. 127.0.0.1:5550 (port 0: ephemeral)",
                                  field="location")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InvalidTransportURL(f"write an IPv6 address in brackets in {text!r}, e.g. [::1]:5550",
                                  field="location")
    try:
        port = int(port_text, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise InvalidTransportURL(f"bad port {port_text!r} in {text!r}; expected 0..65535 (0: ephemeral)",
                                  field="port")
    return host, port


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_location(url: TransportURL, text: str) -> TransportURL:
    if url.kind == "loop":
        if not url.location:
            url = url.replace(location="default")
        if "/" in url.location:
            raise InvalidTransportURL(f"a loop channel name has no '/': {text!r}", field="location")
    elif url.kind == "zmq":
        if not url.location:
            raise InvalidTransportURL(f"{text!r} has no address; e.g. zmq+tcp://127.0.0.1:5550, "
                                      "zmq+ipc:///tmp/flatsat, zmq+inproc://board", field="location")
        if url.carrier == "tcp":
            split_host_port(url.location, text)
    elif url.kind == "serial":
        if url.carrier in (None, "socket", "rfc2217") and not url.location:
            raise InvalidTransportURL(f"{text!r} names no device; e.g. serial:///dev/ttyUSB0?baud=921600",
                                      field="location")
        if url.carrier in ("socket", "rfc2217"):
            split_host_port(url.location, text)
        if url.carrier == "fd" and not re.fullmatch(r"[0-9]{1,9}", url.location):
            raise InvalidTransportURL(f"{text!r} needs an open file descriptor number, e.g. serial+fd://3 (a pty "
                                      "master the process inherited)", field="location")
    return url


def describe_options(kind: str) -> Iterator[tuple[str, str, str, str]]:
    """(name, type, default, doc) for every option of ``kind``, common ones first (for docs and errors)."""
    for option in SCHEMES[kind].option_table().values():
        default = "" if option.default is None else option.format(option.default)
        yield option.name, option.kind, default, option.doc
