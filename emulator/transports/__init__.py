"""Links chosen by URL: :func:`listen` (emulator side) and :func:`connect` (board / harness side).

These two factories are the only front door. The URL's kind picks the implementation through
:data:`TRANSPORTS` (kind -> (module, class), imported lazily), so a missing optional package only
matters for the kind that needs it::

    async with await listen("zmq+tcp://127.0.0.1:0") as server, await connect(server.url) as client:
        await client.send(Message("ping", {}, seq=1))
        request = await server.recv()
        await server.send_to(request.peer, request.message.reply(ok=True, t_ns=0, src="emulator"))

See docs/transports.md for the grammar and options of every scheme.
"""

from __future__ import annotations

import importlib

from emulator.errors import InvalidTransportURL, TransportUnavailableError
from emulator.transports.base import ClientLink, Incoming, LinkStats, ServerLink, TransportFactory, open_links
from emulator.transports.url import SCHEMES, TransportURL, known_kinds, parse_transport_url

#: kind -> (module, factory class). Every kind here has a :data:`~emulator.transports.url.SCHEMES` entry.
TRANSPORTS: dict[str, tuple[str, str]] = {
    "loop": ("emulator.transports.loop", "LoopTransport"),
    "serial": ("emulator.transports.serial", "SerialTransport"),
    "zmq": ("emulator.transports.zmq", "ZmqTransport"),
}

#: import name -> pip package, for the TransportUnavailableError message
_PACKAGES = {"zmq": "pyzmq", "serial": "pyserial", "msgpack": "msgpack", "cobs": "cobs"}


def _factory(url: TransportURL) -> type[TransportFactory]:
    entry = TRANSPORTS.get(url.kind)
    if entry is None:  # parse_transport_url knows the kind but nobody registered it
        raise InvalidTransportURL(f"no transport registered for kind {url.kind!r}; known kinds: "
                                  f"{', '.join(sorted(TRANSPORTS))}", field="kind", valid=sorted(TRANSPORTS))
    module_name, class_name = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        package = _PACKAGES.get(missing, missing or "?")
        raise TransportUnavailableError(
            f"{url.scheme}:// links need the Python package {package!r}, which cannot be imported ({exc}); "
            f"install it with: pip install {package}", field="kind") from exc
    factory: type[TransportFactory] = getattr(module, class_name)
    return factory


async def listen(url: str | TransportURL) -> ServerLink:
    """Open the emulator side of a link.

    Args:
        url: a transport URL (docs/transports.md); port 0 / ephemeral addresses are resolved in the
            returned link's ``url``, which can be given to :func:`connect`.

    Returns:
        A :class:`ServerLink`; close it with ``aclose()`` or ``async with``.

    Raises:
        InvalidTransportURL: bad URL, unknown kind or option, or a value the medium cannot use.
        TransportUnavailableError: the backend package is missing, or the address/device cannot be opened.
    """
    parsed = parse_transport_url(url)
    return await _factory(parsed).listen(parsed)


async def connect(url: str | TransportURL) -> ClientLink:
    """Open the board / harness side of a link.

    Args:
        url: a transport URL, typically the ``url`` of a :class:`ServerLink`.

    Returns:
        A :class:`ClientLink`; close it with ``aclose()`` or ``async with``.

    Raises:
        InvalidTransportURL: bad URL, unknown kind or option.
        TransportUnavailableError: the backend package is missing, or nothing can be reached at the address.
    """
    parsed = parse_transport_url(url)
    return await _factory(parsed).connect(parsed)


__all__ = [
    "SCHEMES",
    "TRANSPORTS",
    "ClientLink",
    "Incoming",
    "LinkStats",
    "ServerLink",
    "TransportURL",
    "connect",
    "known_kinds",
    "listen",
    "open_links",
    "parse_transport_url",
]
