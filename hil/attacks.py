"""Rude peers: what a broken board or an attacker does to an emulator, as separate processes.

Each attack runs on its own (``python -m hil.attacks ATTACK URL ...``), so it loads the emulator from
outside as a real peer would, and prints one JSON line with what it did (messages sent, replies seen).
``tests/adversarial`` runs them small, ``bench/torture.py`` at full size. Targets are the emulator's own
URLs on this machine (loopback, ipc, a pty): every loop here is bounded in count and time.

==================== =================================================================================
ping-flood           valid ``ping`` requests on a board/control ROUTER, as fast as the socket takes them
garbage-flood        random bytes on a ROUTER, as fast as possible
long-subscription    one SUB whose subscription is ``--bytes`` long
subscription-flood   one SUB with ``--count`` distinct subscriptions
decode-bomb          ``--count`` requests of ``--bytes`` each, made of empty msgpack arrays
names                ``--count`` hellos and pings, each with a new ``src`` and board name
serial-mute          pings on a serial device, never reading the replies
serial-flood         valid frames (``--garbage``: random bytes) on a serial device, as fast as it takes them
random-frames        ``--count`` random byte strings on a ROUTER (``zmq+``) or a serial device (``serial://``)
==================== =================================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from typing import Any

import msgpack

from emulator.protocol.codec import encode_message
from emulator.protocol.envelope import MAX_MESSAGE_BYTES, Message
from emulator.protocol.framing import encode_frame

#: hard ceiling on any attack's duration, whatever it is asked (a test or bench must end)
MAX_SECONDS = 600.0


def _zmq_endpoints(url: str) -> tuple[str, str]:
    """(telemetry endpoint, request endpoint) of a resolved flatsat zmq URL."""
    from emulator.transports.url import parse_transport_url
    from emulator.transports.zmq import endpoints

    return endpoints(parse_transport_url(url))


def _dealer(url: str) -> Any:
    import zmq

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.connect(_zmq_endpoints(url)[1])
    return sock


def _drain(sock: Any) -> int:
    import zmq

    n = 0
    while True:
        try:
            sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return n
        n += 1


def flood(url: str, seconds: float, garbage: bool, seed: int = 1) -> dict[str, Any]:
    import zmq

    sock = _dealer(url)
    rng = random.Random(seed)
    sent = replies = 0
    end = time.monotonic() + min(seconds, MAX_SECONDS)
    seq = 0
    while time.monotonic() < end:
        for _ in range(256):
            seq += 1
            data = rng.randbytes(rng.randint(1, 64)) if garbage else \
                encode_message(Message("ping", {}, seq=seq, t_ns=0, src="flood"))
            try:
                sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                break
            sent += 1
        replies += _drain(sock)
    more, markers = _finish(sock)
    sent += markers
    replies += more
    return {"attack": "garbage-flood" if garbage else "ping-flood", "sent": sent, "replies": replies,
            "seconds": seconds, "rate_hz": sent / seconds}


def _finish(sock: Any, seq: int = 10**9) -> tuple[int, int]:
    """Wait until the emulator has taken every message sent (the tests count every one), then close.

    Requests are taken in order, so the reply to a ``ping`` sent last means all before it were taken. A
    marker may itself be rate-limited (no reply): another follows each second. Closing earlier would lose
    messages: a socket closed with unread replies resets the connection, and the emulator's kernel drops
    what it had not read yet. Returns (replies seen, markers sent).
    """
    import zmq

    replies = markers = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seq += 1
        markers += 1
        while True:
            try:
                sock.send(encode_message(Message("ping", {}, seq=seq, t_ns=0, src="marker")), zmq.NOBLOCK)
                break
            except zmq.Again:
                replies += _drain(sock)
                time.sleep(0.001)
        wait_until = time.monotonic() + 1.0
        answered = False
        while time.monotonic() < wait_until and not answered:
            if sock.poll(50):
                while True:
                    try:
                        data = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    replies += 1
                    with contextlib.suppress(Exception):
                        answered |= msgpack.unpackb(data)["payload"].get("id") == seq
        if answered:
            break
    sock.close(linger=0)
    return replies, markers


def long_subscription(url: str, n_bytes: int, seconds: float) -> dict[str, Any]:
    import zmq

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.connect(_zmq_endpoints(url)[0])
    sock.setsockopt(zmq.SUBSCRIBE, b"x" * n_bytes)
    time.sleep(min(seconds, MAX_SECONDS))
    return {"attack": "long-subscription", "bytes": n_bytes}


def subscription_flood(url: str, count: int, seconds: float, seed: int = 1) -> dict[str, Any]:
    import zmq

    rng = random.Random(seed)
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(_zmq_endpoints(url)[0])
    for _ in range(count):
        sock.setsockopt(zmq.SUBSCRIBE, rng.randbytes(64))
    time.sleep(min(seconds, MAX_SECONDS))
    return {"attack": "subscription-flood", "count": count}


def bomb_bytes(n_bytes: int) -> bytes:
    """An envelope of at most ``n_bytes`` (< 1 MiB) whose payload holds only empty arrays (one byte, 0x90, each).

    msgpack limits one array to 65,536 items, so the payload is ``{"a": [[<=65536 x []], ...]}``: 983 kB
    of it decode to a million Python lists.
    """
    pack = msgpack.packb
    head = b"\x86" + b"".join(pack(k) + pack(v) for k, v in (("topic", "ping"), ("v", 1), ("seq", 1),
                                                             ("t_ns", 0), ("src", "bomb")))
    room = min(n_bytes, MAX_MESSAGE_BYTES) - len(head) - 32
    inner = 65536
    k = max(1, room // (inner + 5))
    body = pack("payload") + b"\x81" + pack("a") + b"\xdc" + k.to_bytes(2, "big") + \
        (b"\xdd" + inner.to_bytes(4, "big") + b"\x90" * inner) * k
    return head + body


def decode_bomb(url: str, count: int, n_bytes: int) -> dict[str, Any]:

    sock = _dealer(url)
    data = bomb_bytes(n_bytes)
    for _ in range(count):
        sock.send(data)
    replies = 0
    end = time.monotonic() + 60
    while replies < count and time.monotonic() < end:
        if sock.poll(100):
            replies += _drain(sock)
    more, markers = _finish(sock)
    return {"attack": "decode-bomb", "sent": count + markers, "bytes": len(data), "replies": replies + more}


def names(url: str, count: int) -> dict[str, Any]:
    import zmq

    sock = _dealer(url)
    replies = 0
    for i in range(count):
        name = f"board-{i:07d}-" + "n" * 40
        for topic, payload in (("board.hello", {"name": name, "version": "v" * 60}), ("ping", {})):
            while True:
                try:
                    sock.send(encode_message(Message(topic, payload, seq=2 * i + 1, t_ns=0, src=name * 2)),
                              zmq.NOBLOCK)
                    break
                except zmq.Again:
                    replies += _drain(sock)
                    time.sleep(0.001)
        if i % 256 == 0:
            replies += _drain(sock)
    # no waiting for 2 * count replies: requests over the rate limit are dropped unread and never answered, so
    # that wait always ran to its end; _finish knows when the emulator has taken everything and counts the rest
    more, markers = _finish(sock)
    return {"attack": "names", "sent": 2 * count + markers, "replies": replies + more}


def _open_serial(path: str) -> int:
    """A device path, or ``fd:N``: a descriptor this process inherited (a pty master has no path)."""
    import termios
    import tty

    fd = os.dup(int(path[3:])) if path.startswith("fd:") else os.open(path, os.O_RDWR | os.O_NOCTTY)
    if os.isatty(fd):
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return fd


def serial_write(path: str, seconds: float, *, garbage: bool, mute: bool, count: int | None = None,
                 seed: int = 1) -> dict[str, Any]:
    """Write frames to a serial device (its other end is the emulator); ``mute``: never read."""
    import select

    fd = _open_serial(path)
    rng = random.Random(seed)
    sent = read = 0
    end = time.monotonic() + min(seconds, MAX_SECONDS)
    seq = 0
    try:
        while time.monotonic() < end and (count is None or sent < count):
            seq += 1
            frame = rng.randbytes(rng.randint(1, 64)) if garbage else \
                encode_frame(encode_message(Message("ping", {}, seq=seq, t_ns=0, src="flood")))
            _, writable, _ = select.select([], [fd], [], 0.05)
            if writable:
                os.write(fd, frame)
                sent += 1
            if not mute:
                while select.select([fd], [], [], 0)[0]:
                    read += len(os.read(fd, 65536))
    finally:
        os.close(fd)
    return {"attack": "serial-mute" if mute else "serial-flood", "sent": sent, "bytes_read": read,
            "garbage": garbage}


def random_frames(url: str, count: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    if url.startswith(("serial://", "fd:")):
        fd = _open_serial(url.removeprefix("serial://"))
        try:
            for _ in range(count):
                os.write(fd, rng.randbytes(rng.randint(1, 200)))
        finally:
            os.close(fd)
        return {"attack": "random-frames", "sent": count}
    import zmq

    sock = _dealer(url)
    replies = 0
    for i in range(count):
        while True:
            try:
                sock.send(rng.randbytes(rng.randint(1, 200)), zmq.NOBLOCK)
                break
            except zmq.Again:
                replies += _drain(sock)
        if i % 1024 == 0:
            replies += _drain(sock)
    end = time.monotonic() + 30
    while replies < count and time.monotonic() < end:
        if sock.poll(200):
            replies += _drain(sock)
    more, markers = _finish(sock)
    return {"attack": "random-frames", "sent": count + markers, "replies": replies + more}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.attacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("attack", choices=["ping-flood", "garbage-flood", "long-subscription", "subscription-flood",
                                           "decode-bomb", "names", "serial-mute", "serial-flood", "random-frames"])
    parser.add_argument("url", help="the emulator's resolved zmq URL, serial:///dev/pts/N, or fd:N (an inherited "
                                    "descriptor, e.g. a pty master)")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--bytes", type=int, default=1_000_000)
    parser.add_argument("--garbage", action="store_true")
    args = parser.parse_args(argv)
    a = args.attack
    if a in ("ping-flood", "garbage-flood"):
        out = flood(args.url, args.seconds, garbage=a == "garbage-flood")
    elif a == "long-subscription":
        out = long_subscription(args.url, args.bytes, args.seconds)
    elif a == "subscription-flood":
        out = subscription_flood(args.url, args.count, args.seconds)
    elif a == "decode-bomb":
        out = decode_bomb(args.url, args.count, args.bytes)
    elif a == "names":
        out = names(args.url, args.count)
    elif a == "random-frames":
        out = random_frames(args.url, args.count)
    else:
        path = args.url.removeprefix("serial://")
        out = serial_write(path, args.seconds, garbage=args.garbage, mute=a == "serial-mute",
                           count=args.count if a == "serial-mute" else None)
    print(json.dumps(out), flush=True)
    if a in ("long-subscription", "subscription-flood"):
        # libzmq frees a long subscription trie recursively: the attacker's own teardown can overflow the stack
        os._exit(0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
