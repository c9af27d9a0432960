"""Serial frames/s: the COBS + CRC + codec path over a pty, unpaced and paced at 921600 baud, vs theory.

Three figures in one run:
1. codec alone: encode_message + encode_frame + FrameDecoder.feed + decode_message per ~400 B message
   (what one core could push if the line were infinitely fast);
2. flatsat unpaced over a pty null modem (two ptys joined by a relay, both ends opened by URL), against
   a raw-pty baseline that moves the same pre-encoded frames with os.write/os.read and no codec;
3. flatsat paced at 921600 baud (``pace=1``) against the theoretical rate of that line:
   baud / (10 bits per byte, 8N1) / bytes per frame on the wire (ceilings.md section 5: 227.6 frames/s
   for a 405 B frame). Goal: the codec is never the bottleneck (1 and 2 far above 3), and the paced link
   reaches >= 98 % of theory.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.protocol import FrameDecoder, Message, decode_message, encode_frame, encode_message
from emulator.transports import connect, listen

BAUD = 921600
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
UNPACED_S = 1.5
PACED_S = 3.0
GOAL = 0.98


def telemetry(i: int) -> Message:
    """31 fields (24 floats, 7 ints); every value keeps its msgpack width, so every frame has the same length
    and the theoretical frame rate is exact."""
    payload: dict[str, float | int] = {f"v{k}": 3.3 + k * 0.0123456789 + i * 1e-9 for k in range(12)}
    payload.update({f"a{k}": 0.25 + k * 0.0345678901 for k in range(12)})
    payload.update({f"n{k}": 1000 + 100 * k + i % 100 for k in range(7)})
    return Message("eps.telemetry", payload, seq=10**6 + i, t_ns=10**15 + i * 10**9, src="emulator")


def codec_rate() -> float:
    decoder = FrameDecoder()
    msgs = [telemetry(i) for i in range(2000)]
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 1.0:
        for msg in msgs:
            for body in decoder.feed(encode_frame(encode_message(msg))):
                decode_message(body)
            n += 1
    return n / (time.perf_counter() - t0)


class Relay:
    """Two ptys joined back to back (a null modem); returns their slave paths."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.fds = []
        self.masters = []
        self.paths = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self.fds += [master, slave]
            self.masters.append(master)
            self.paths.append(os.ttyname(slave))
        self.pending = {m: bytearray() for m in self.masters}
        for src, dst in ((self.masters[0], self.masters[1]), (self.masters[1], self.masters[0])):
            self.loop.add_reader(src, self._relay, src, dst)

    def _relay(self, src: int, dst: int) -> None:
        try:
            self.pending[dst] += os.read(src, 65536)
        except OSError:
            return
        self._drain(dst)

    def _drain(self, dst: int) -> None:
        buf = self.pending[dst]
        while buf:
            try:
                n = os.write(dst, buf)
            except BlockingIOError:
                self.loop.add_writer(dst, self._drain, dst)
                return
            del buf[:n]
        self.loop.remove_writer(dst)

    def close(self) -> None:
        for m in self.masters:
            self.loop.remove_reader(m)
            self.loop.remove_writer(m)
        for fd in self.fds:
            os.close(fd)


async def raw_pty_rate(frame: bytes) -> float:
    """Baseline: pre-encoded frames through one raw pty (master -> slave), one write per frame, counting
    delimiters on the reading side; no codec, no relay (ceilings.md section 5: ~50k frames/s)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    os.set_blocking(slave, False)
    loop = asyncio.get_running_loop()
    received = 0

    def on_read() -> None:
        nonlocal received
        try:
            received += os.read(slave, 65536).count(0)
        except BlockingIOError:
            return

    loop.add_reader(slave, on_read)
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < UNPACED_S:
            for _ in range(64):  # one frame per write, as the link writes them
                try:
                    os.write(master, frame)
                except BlockingIOError:
                    break
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - t0
    finally:
        loop.remove_reader(slave)
        os.close(master)
        os.close(slave)
    return received / elapsed


async def flatsat_rate(paced: bool) -> tuple[float, int, float]:
    relay = Relay()
    opts = f"baud={BAUD}&hwm=100000" + ("&pace=1" if paced else "")
    duration = PACED_S if paced else UNPACED_S
    try:
        async with await listen(f"serial://{relay.paths[0]}?{opts}") as server, \
                await connect(f"serial://{relay.paths[1]}?{opts}") as client:
            arrivals: list[float] = []

            async def consume() -> None:
                while True:
                    await client.recv()
                    arrivals.append(time.perf_counter())

            consumer = asyncio.create_task(consume())
            t0 = time.perf_counter()
            i = 0
            if paced:  # queue what the line can carry in the run (plus a margin); the link releases it
                n_frames = int(duration * BAUD / BITS_PER_BYTE / len(encode_frame(encode_message(telemetry(0)))))
                for i in range(n_frames + 20):
                    await server.publish(telemetry(i))
                await asyncio.sleep(duration)
            else:  # keep the link busy: publish whenever fewer than 64 frames wait
                while time.perf_counter() - t0 < duration:
                    while server.stats.tx - len(arrivals) < 64:
                        await server.publish(telemetry(i))
                        i += 1
                    await asyncio.sleep(0)
            consumer.cancel()
            n = len(arrivals)
            rate = (n - 1) / (arrivals[-1] - arrivals[0]) if n > 1 else 0.0
            assert len({len(encode_frame(encode_message(telemetry(k)))) for k in range(0, i + 1, 97)}) == 1
            return rate, n, server.stats.dropped_tx
    finally:
        relay.close()


async def run() -> None:
    msg = telemetry(0)
    body = encode_message(msg)
    frame = encode_frame(body)
    theory = BAUD / BITS_PER_BYTE / len(frame)
    codec = codec_rate()
    raw = await raw_pty_rate(frame)
    unpaced, n_unpaced, _ = await flatsat_rate(paced=False)
    paced, n_paced, dropped = await flatsat_rate(paced=True)
    print(f"serial frames/s: message {len(body)} B -> frame {len(frame)} B on the wire (COBS + CRC-16 + 0x00)")
    print(f"{'codec alone (encode+frame+deframe+decode)':48s} {codec:10.0f} frames/s ({1e6 / codec:.1f} us/frame)")
    print(f"{'raw pty, pre-encoded frames, no codec':48s} {raw:10.0f} frames/s")
    print(f"{'flatsat unpaced over a pty null modem':48s} {unpaced:10.0f} frames/s ({n_unpaced} frames; "
          f"{unpaced / raw:.2f} of raw pty)")
    print(f"{f'theory at {BAUD} baud, 8N1 (10 bit/byte)':48s} {theory:10.1f} frames/s")
    print(f"{f'flatsat paced (pace=1) at {BAUD} baud':48s} {paced:10.1f} frames/s ({n_paced} frames, "
          f"{dropped} dropped)")
    print(f"codec headroom: unpaced flatsat / theory = {unpaced / theory:.0f}x "
          f"({'codec is not the bottleneck' if unpaced > 10 * theory else 'codec IS the bottleneck'})")
    ratio = paced / theory
    print(f"paced / theory: {ratio:.4f} (goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'})")


def main() -> int:
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
