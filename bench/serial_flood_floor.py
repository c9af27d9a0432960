"""The floor under a serial garbage flood: the least any asyncio reader of the flooded pty can do, beside flatsat.

Both runs face the same attacker (``python -m hil.attacks serial-flood --garbage``: random bytes as fast as one
process can write them into the pty's other end) for the same time:

- floor: one asyncio process that reads the pty 4 kB per wake-up, splits frames with flatsat's own decoder (every
  frame counted, nothing answered) and runs a 100 Hz sleep-until-deadline tick, the lateness of which it records.
  No emulator, no physics, no telemetry: the cost of the pty, the scheduler and the decoding alone.
- flatsat: ``flatsat run`` in realtime at 100 Hz with the pty as its board link, its lateness read from
  ``sim.clock`` (as ``bench/torture.py serialflood`` does).

    python bench/serial_flood_floor.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from emulator.protocol.framing import FrameDecoder

TICK_S = 0.01
READ_BYTES = 4096


async def attacker(master: int, seconds: float) -> dict:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hil.attacks", "serial-flood", f"fd:{master}",
                                                "--garbage", "--seconds", str(seconds), cwd=str(ROOT),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                pass_fds=(master,))
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.decode()[-2000:])
    return json.loads(out.decode().strip().splitlines()[-1])


async def floor(seconds: float) -> dict:
    master, slave = os.openpty()
    os.set_blocking(slave, False)
    loop = asyncio.get_running_loop()
    decoder = FrameDecoder()
    read = [0]

    def on_readable() -> None:
        try:
            data = os.read(slave, READ_BYTES)
        except BlockingIOError:
            return
        read[0] += len(data)
        decoder.feed(data)

    loop.add_reader(slave, on_readable)
    lateness_s: list[float] = []
    attack = asyncio.create_task(attacker(master, seconds))
    deadline = time.monotonic()
    while not attack.done():
        deadline += TICK_S
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        lateness_s.append(max(0.0, time.monotonic() - deadline))
    loop.remove_reader(slave)
    result = await attack
    os.close(master)
    os.close(slave)
    st = decoder.stats
    return {"lateness_s": lateness_s, "read": read[0], "sent": result.get("sent"),
            "dropped": st.bad_cobs + st.bad_crc + st.too_short + st.oversized}


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) > 2 else float("nan")


async def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args(argv)
    import torture  # the flatsat side, measured exactly as the torture table is

    print(f"serial garbage flood, {args.seconds:g} s each, 2 runs side by side; {os.cpu_count()} CPUs; "
          f"load {os.getloadavg()[0]:.1f}")
    fl = await floor(args.seconds)
    print(f"floor  : tick lateness p99 {p99(fl['lateness_s']) * 1e3:.2f} ms, max {max(fl['lateness_s']) * 1e3:.1f} ms"
          f" ({fl['read']:,} bytes read, {fl['dropped']:,} bad frames counted)")
    print("flatsat: (torture serialflood)")
    await torture.serial_flood(args.seconds)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
