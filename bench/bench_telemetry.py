"""Telemetry throughput: flatsat's publish path over zmq+tcp vs raw zmq.asyncio PUB/SUB, same run, same payload.

flatsat: build a Message, ``ServerLink.publish`` (encode_message + XPUB send), a ``ClientLink`` on
the same event loop receiving and decoding every message (``decode_message`` checks the envelope).
Baseline: raw pyzmq asyncio PUB/SUB, ``msgpack.packb`` of the same envelope per message,
``await sub.recv()`` + ``msgpack.unpackb`` per message (ceilings.md table 1, "zmq.asyncio,
pack+unpack", 63k msgs/s median on the reference VM). Payload: 31 float/int fields, ~400 B.
Both sides run end to end (time until the subscriber has every message; high-water marks large
enough that nothing is dropped). Goal: flatsat >= 50 % of the baseline.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import msgpack
import zmq
import zmq.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.protocol import Message, encode_message
from emulator.transports import connect, listen

N = 30_000  #: messages per run
RUNS = 3
YIELD_EVERY = 64  #: the publisher yields to the loop this often (both variants alike)
GOAL = 0.50


def payload(i: int) -> dict[str, float | int]:
    """31 fields: 24 floats (voltages, currents, temperatures) and 7 ints, ~400 B of msgpack."""
    fields: dict[str, float | int] = {f"v{k}": 3.3 + k * 0.0123456789 + i * 1e-9 for k in range(12)}
    fields.update({f"a{k}": 0.25 + k * 0.0345678901 for k in range(12)})
    fields.update({f"n{k}": 1000 * k + i % 1000 for k in range(7)})
    return fields


def envelope(i: int) -> dict[str, object]:
    return {"v": 1, "topic": "eps.telemetry", "seq": i, "t_ns": i * 1_000_000_000, "src": "emulator",
            "payload": payload(i)}


async def run_flatsat() -> float:
    async with await listen(f"zmq+tcp://127.0.0.1:0?hwm={N * 2}") as server, \
            await connect(server.url.replace(hwm=N * 2)) as client:
        done = asyncio.Event()

        async def consume() -> None:
            for _ in range(N):
                await client.recv()
            done.set()

        consumer = asyncio.create_task(consume())
        t0 = time.perf_counter()
        for i in range(N):
            await server.publish(Message("eps.telemetry", payload(i), seq=i, t_ns=i * 1_000_000_000, src="emulator"))
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        await done.wait()
        elapsed = time.perf_counter() - t0
        await consumer
        assert server.stats.dropped_tx == 0 and client.stats.rx == N
    return N / elapsed


async def run_raw() -> float:
    ctx = zmq.asyncio.Context.instance()
    pub = ctx.socket(zmq.PUB)
    sub = ctx.socket(zmq.SUB)
    for sock in (pub, sub):
        sock.setsockopt(zmq.SNDHWM, N * 2)
        sock.setsockopt(zmq.RCVHWM, N * 2)
        sock.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    try:
        while True:  # slow joiner: publish probes until one arrives
            await pub.send(b"probe")
            try:
                async with asyncio.timeout(0.05):
                    if await sub.recv() == b"probe":
                        break
            except TimeoutError:
                continue
        while await sub.poll(10):  # drain the remaining probes
            await sub.recv()
        done = asyncio.Event()

        async def consume() -> None:
            for _ in range(N):
                msgpack.unpackb(await sub.recv(), raw=False)
            done.set()

        consumer = asyncio.create_task(consume())
        t0 = time.perf_counter()
        for i in range(N):
            await pub.send(msgpack.packb(envelope(i), use_bin_type=True))
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        await done.wait()
        elapsed = time.perf_counter() - t0
        await consumer
    finally:
        pub.close()
        sub.close()
    return N / elapsed


def main() -> int:
    size = len(encode_message(Message("eps.telemetry", payload(0), seq=N, t_ns=N * 10**9, src="emulator")))
    print(f"telemetry throughput, zmq+tcp loopback, {N} messages x {RUNS} runs, envelope {size} B "
          f"(31 float/int fields)")
    raw, flat = [], []
    for _ in range(RUNS):
        raw.append(asyncio.run(run_raw()))
        flat.append(asyncio.run(run_flatsat()))
    r, f = statistics.median(raw), statistics.median(flat)
    print(f"{'raw zmq.asyncio PUB/SUB + msgpack':40s} {r:10.0f} msgs/s  (runs: {', '.join(f'{x:.0f}' for x in raw)})")
    print(f"{'flatsat publish -> ClientLink.recv':40s} {f:10.0f} msgs/s  (runs: {', '.join(f'{x:.0f}' for x in flat)})")
    print(f"ratio flatsat / raw: {f / r:.2f} (goal >= {GOAL:.2f}: {'met' if f / r >= GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
