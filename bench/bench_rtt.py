"""Command round trip over zmq+tcp: flatsat (ClientLink.send -> ServerLink.recv -> send_to -> ClientLink.recv)
vs a raw zmq.asyncio DEALER -> ROUTER echo, same run, same event loop arrangement.

flatsat encodes and checks the request and the reply envelopes on both sides; the baseline echoes
bytes (ceilings.md table 2, "RTT tcp zmq.asyncio": p50 ~130 us, p99 ~250 us on the reference VM).
Goal: flatsat p99 <= 2 x raw p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

import msgpack
import zmq
import zmq.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.protocol import Message
from emulator.transports import connect, listen

N = 1000  #: timed round trips per variant and round
ROUNDS = 5  #: alternating rounds; the median round is reported (the VM is shared and noisy)
WARMUP = 200
GOAL = 2.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def command(seq: int) -> Message:
    return Message("accel.clock.set", {"clock_mhz": 940, "reason": "thermal"}, seq=seq, t_ns=seq, src="board")


async def run_flatsat() -> list[float]:
    async with await listen("zmq+tcp://127.0.0.1:0") as server, await connect(server.url) as client:
        async def serve() -> None:
            async for inc in server:
                assert inc.message is not None
                await server.send_to(inc.peer, inc.message.reply(ok=True, t_ns=0, src="emulator",
                                                                 data={"clock_mhz": 940}))

        task = asyncio.create_task(serve())
        rtts = []
        for i in range(WARMUP + N):
            t0 = time.perf_counter_ns()
            await client.send(command(i))
            reply = await client.recv()
            rtts.append((time.perf_counter_ns() - t0) / 1e3)
            assert reply.payload["id"] == i
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return rtts[WARMUP:]


async def run_raw() -> list[float]:
    ctx = zmq.asyncio.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
    blob = msgpack.packb({"v": 1, "topic": "accel.clock.set", "seq": 1, "t_ns": 1, "src": "board",
                          "payload": {"clock_mhz": 940, "reason": "thermal"}})

    async def echo() -> None:
        while True:
            await router.send_multipart(await router.recv_multipart())

    task = asyncio.create_task(echo())
    rtts = []
    try:
        for _ in range(WARMUP + N):
            t0 = time.perf_counter_ns()
            await dealer.send(blob)
            await dealer.recv()
            rtts.append((time.perf_counter_ns() - t0) / 1e3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        router.close()
        dealer.close()
    return rtts[WARMUP:]


def main() -> int:
    rounds: dict[str, list[tuple[float, float, float]]] = {"raw": [], "flatsat": []}
    for _ in range(ROUNDS):  # alternate so both see the same machine load
        for name, fn in (("raw", run_raw), ("flatsat", run_flatsat)):
            v = asyncio.run(fn())
            rounds[name].append((pct(v, 0.5), pct(v, 0.99), pct(v, 0.999)))
    med = {name: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for name, rs in rounds.items()}
    print(f"command round trip, zmq+tcp loopback, {ROUNDS} alternating rounds of {N} (median round, us)")
    print(f"{'':36s} {'p50':>8s} {'p99':>8s} {'p99.9':>8s}")
    for name, label in (("raw", "raw zmq.asyncio DEALER/ROUTER echo"), ("flatsat", "flatsat ClientLink <-> ServerLink")):
        p50, p99, p999 = med[name]
        print(f"{label:36s} {p50:8.1f} {p99:8.1f} {p999:8.1f}")
    ratio = med["flatsat"][1] / med["raw"][1]
    print(f"p50 ratio flatsat / raw: {med['flatsat'][0] / med['raw'][0]:.2f}")
    print(f"p99 ratio flatsat / raw: {ratio:.2f} (goal <= {GOAL:.1f}: {'met' if ratio <= GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
