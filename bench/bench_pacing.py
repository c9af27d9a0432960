"""Real-time pacing at 100 Hz with telemetry going out: flatsat's tick lateness vs a bare asyncio loop.

Baseline (same run, same machine): a bare asyncio loop that sleeps to absolute deadlines, which
is the best plain asyncio can do here (ceilings.md section 4: p50 ~0.5-1.2 ms late, p99 ~2 ms).
flatsat: the Emulator in `realtime` mode stepping the full satellite every 10 ms, publishing
its telemetry at 100 Hz over zmq+tcp to a subscriber in another process-less client, and the
lateness of every released step as the clock measures it. Goal: p99 < 1 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.clock import NS_PER_S
from emulator.config import load_config
from emulator.runtime import Emulator
from emulator.transports import connect

RATE_HZ = 100
SECONDS = 5.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def baseline() -> list[float]:
    period = NS_PER_S // RATE_HZ
    start = time.monotonic_ns()
    late = []
    for k in range(1, int(SECONDS * RATE_HZ) + 1):
        deadline = start + k * period
        await asyncio.sleep(max(0, deadline - time.monotonic_ns()) / NS_PER_S)
        late.append((time.monotonic_ns() - deadline) / 1e6)
    return late


async def flatsat() -> tuple[list[float], int]:
    root = Path(__file__).resolve().parent.parent
    rates = {"eps.telemetry": RATE_HZ, "thermal.telemetry": RATE_HZ, "sim.clock": RATE_HZ}
    cfg = load_config(root / "configs" / "suncatcher-proto.toml", {
        "sim.mode": "realtime", "sim.step_s": 1 / RATE_HZ, "links.board": "zmq+tcp://127.0.0.1:0",
        "links.control": None, "telemetry.rates_hz": rates})
    emu = Emulator.from_config(cfg)
    lags: list[float] = []
    received = 0
    async with emu:
        emu.add_observer(lambda t: lags.append(emu.clock.stats.lag_ns / 1e6))
        async with await connect(emu.board_url) as sub:
            async def drain() -> None:
                nonlocal received
                async for _ in sub:
                    received += 1

            reader = asyncio.create_task(drain())
            await emu.run_for(SECONDS)
            reader.cancel()
    return lags[5:], received  # the first ticks include socket set-up


def main() -> int:
    base = asyncio.run(baseline())
    lags, received = asyncio.run(flatsat())
    print(f"real-time pacing at {RATE_HZ} Hz for {SECONDS:g} s (tick lateness, ms)")
    print(f"{'':28s} {'p50':>8s} {'p99':>8s} {'max':>8s}")
    for name, v in (("bare asyncio deadline sleep", base), ("flatsat realtime + telemetry", lags)):
        print(f"{name:28s} {statistics.median(v):8.3f} {pct(v, 0.99):8.3f} {max(v):8.3f}")
    print(f"telemetry messages received by the subscriber: {received}")
    ratio = pct(lags, 0.99) / pct(base, 0.99)
    print(f"p99 ratio flatsat / bare asyncio: {ratio:.2f} (goal: flatsat p99 < 1 ms: "
          f"{'met' if pct(lags, 0.99) < 1.0 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
