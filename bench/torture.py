"""Torture: the rude peers of docs/reliability.md at full size, against `flatsat run` as a user starts it.

    python bench/torture.py                 # every attack (about 5 minutes)
    python bench/torture.py flood bombs     # some of them: flood, garbage, bombs, names, mute, subscription,
                                            # subflood, frames, curve, noisy

Each attack runs against a fresh `flatsat run` process (realtime, 100 Hz physics, `sim.clock` at 100 Hz so
every published sample carries the lateness of a step), with the attack as its own process
(`python -m hil.attacks`). Figures read from outside, as an operator would: the emulator's RSS from /proc,
tick lateness from `sim.clock`, control-plane round trips from a probe asking `clock.status` every 20 ms,
counters from `stats.get`. The baseline is the same run unattacked, measured first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.protocol.envelope import Message
from emulator.transports import connect

FLATSAT = [sys.executable, "-m", "emulator"]
MB = 1 << 20


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1)))]


class Flatsat:
    """`flatsat run` in realtime, its URLs read from what it prints at start."""

    def __init__(self, board_url: str = "zmq+tcp://127.0.0.1:0", extra: tuple[str, ...] = ()) -> None:
        self.board_url_arg = board_url
        self.extra = extra

    async def __aenter__(self) -> Self:
        self.proc = await asyncio.create_subprocess_exec(
            *FLATSAT, "run", "--config", "suncatcher-proto", "--mode", "realtime", "--step", "0.01",
            "--duration", "2h", "--board-url", self.board_url_arg, "--control-url", "zmq+tcp://127.0.0.1:0",
            "--set", 'telemetry.rates_hz={"sim.clock" = 100}', *self.extra, cwd=str(ROOT),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        line = (await asyncio.wait_for(self.proc.stderr.readline(), 60)).decode()
        m = re.search(r"board plane (\S+)\s+control plane (\S+)", line)
        if not m:
            raise RuntimeError(f"unexpected first line from flatsat run: {line!r}")
        self.board_url, self.control_url = m.group(1), m.group(2)
        self._drain = asyncio.create_task(self._read_stderr())
        self.control = await connect(self.control_url)
        self.lags_s: list[float] = []
        self.clock_msgs = 0
        self.rtts_s: list[float] = []
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._seq = 0
        self._reader = asyncio.create_task(self._read())
        await asyncio.sleep(1.0)
        return self

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while await self.proc.stderr.read(65536):
            pass

    async def _read(self) -> None:
        async for msg in self.control:
            if msg.topic == "sim.clock":
                self.clock_msgs += 1
                self.lags_s.append(msg.payload["lag_s"])
            elif msg.topic == "reply":
                fut = self._replies.pop(msg.payload["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)

    async def request(self, topic: str, timeout_s: float = 10.0) -> dict[str, Any]:
        self._seq += 1
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[self._seq] = fut
        t0 = time.monotonic()
        await self.control.send(Message(topic, {}, seq=self._seq, src="torture"))
        reply = await asyncio.wait_for(fut, timeout_s)
        self.rtts_s.append(time.monotonic() - t0)
        return reply.payload.get("data", {})

    async def probe(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await self.request("clock.status", timeout_s=30)
            await asyncio.sleep(0.02)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await self.control.aclose()
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._drain.cancel()


async def attack(*argv: str, pass_fd: int | None = None, timeout_s: float = 900) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hil.attacks", *argv, cwd=str(ROOT),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                pass_fds=() if pass_fd is None else (pass_fd,))
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"attack {argv[0]} failed: {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def measured(fs: Flatsat, coro: Any) -> dict[str, Any]:
    """Run an attack while probing the control plane and sampling RSS; figures for the window."""
    stop = asyncio.Event()
    lag0, clk0, rtt0 = len(fs.lags_s), fs.clock_msgs, len(fs.rtts_s)
    rss0 = peak = fs.rss_mb()
    probe = asyncio.create_task(fs.probe(stop))

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, fs.rss_mb())
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    try:
        result = await coro
    finally:
        wall = time.monotonic() - t0
        stop.set()
        await asyncio.gather(probe, sampler, return_exceptions=True)
    lags = fs.lags_s[lag0:]
    rtts = fs.rtts_s[rtt0:]
    return {"attack": result, "wall_s": wall, "rss_before_mb": rss0, "rss_peak_mb": peak, "rss_after_mb": fs.rss_mb(),
            "lag_p99_ms": 1e3 * pct(lags, 0.99), "lag_max_ms": 1e3 * max(lags, default=float("nan")),
            "control_rtt_p99_ms": 1e3 * pct(rtts, 0.99), "control_rtt_max_ms": 1e3 * max(rtts, default=float("nan")),
            "sim_clock_hz": (fs.clock_msgs - clk0) / wall}


def show(name: str, fig: dict[str, Any], stats: dict[str, Any] | None = None, plane: str = "board_link") -> None:
    print(f"\n== {name}: {json.dumps(fig['attack'])}")
    print(f"   wall {fig['wall_s']:.1f} s; RSS {fig['rss_before_mb']:.0f} -> peak {fig['rss_peak_mb']:.0f} -> "
          f"{fig['rss_after_mb']:.0f} MB")
    print(f"   tick lateness p99 {fig['lag_p99_ms']:.2f} ms, max {fig['lag_max_ms']:.1f} ms; control round trip "
          f"p99 {fig['control_rtt_p99_ms']:.1f} ms, max {fig['control_rtt_max_ms']:.1f} ms; sim.clock "
          f"{fig['sim_clock_hz']:.0f} Hz (configured 100)")
    if stats is not None:
        link = stats.get(plane, {})
        print(f"   {plane}: rx {link.get('rx')} tx {link.get('tx')} drops {link.get('drops')}; commands "
              f"{stats['commands']} refused {stats['refused']}")


async def baseline() -> None:
    async with Flatsat() as fs:
        fig = await measured(fs, asyncio.sleep(10))
        show("baseline (no attack, 10 s)", fig, await fs.request("stats.get"))


async def flood(kind: str, seconds: float = 20) -> None:
    async with Flatsat() as fs:
        fig = await measured(fs, attack(kind, fs.board_url, "--seconds", str(seconds)))
        stats = await fs.request("stats.get")
        show(f"{kind} on the board ROUTER, {seconds:g} s", fig, stats)
        counted = stats["commands"]["board"] + stats["board_link"]["drops"].get("rate_limited", 0)
        print(f"   every request counted: sent {fig['attack']['sent']}, handled + rate_limited {counted}")


async def bombs(count: int = 48) -> None:
    async with Flatsat() as fs:
        fig = await measured(fs, attack("decode-bomb", fs.board_url, "--count", str(count), "--bytes", str(MB - 100)))
        show(f"{count} decode bombs of 983 kB", fig, await fs.request("stats.get"))


async def names(count: int = 100_000) -> None:
    async with Flatsat() as fs:
        fig = await measured(fs, attack("names", fs.board_url, "--count", str(count)))
        stats = await fs.request("stats.get")
        show(f"{count} distinct board names", fig, stats)
        from emulator.protocol.codec import encode_message

        size = len(encode_message(Message("reply", {"id": 1, "re": "stats.get", "ok": True, "data": stats})))
        print(f"   stats.get reply {size} B; boards kept {len(stats['boards'])}, evicted {stats['boards_evicted']}")


async def subscription(n_bytes: int = 100 * MB) -> None:
    async with Flatsat() as fs:
        fig = await measured(fs, attack("long-subscription", fs.control_url, "--bytes", str(n_bytes), "--seconds", "5"))
        show(f"one subscription of {n_bytes // MB} MB", fig, await fs.request("stats.get"), plane="control_link")


async def subflood(count: int = 100_000) -> None:
    async with Flatsat() as fs:
        fig = await measured(fs, attack("subscription-flood", fs.control_url, "--count", str(count), "--seconds", "5"))
        show(f"{count} distinct subscriptions", fig, await fs.request("stats.get"), plane="control_link")


def _pty() -> tuple[int, str]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


async def mute(count: int = 300_000) -> None:
    master, path = _pty()
    try:
        async with Flatsat(f"serial://{path}?baud=921600") as fs:
            fig = await measured(fs, attack("serial-mute", f"fd:{master}", "--count", str(count), "--seconds", "120",
                                            pass_fd=master))
            show(f"serial peer sending {count} pings, never reading", fig, await fs.request("stats.get"))
    finally:
        os.close(master)


async def serial_flood(seconds: float = 20) -> None:
    master, path = _pty()
    try:
        async with Flatsat(f"serial://{path}?baud=921600") as fs:
            fig = await measured(fs, attack("serial-flood", f"fd:{master}", "--garbage", "--seconds", str(seconds),
                                            pass_fd=master))
            show(f"garbage flood on the serial line, {seconds:g} s", fig, await fs.request("stats.get"))
    finally:
        os.close(master)


async def frames(count: int = 1_000_000) -> None:
    async with Flatsat() as fs:
        fig = await measured(fs, attack("random-frames", fs.board_url, "--count", str(count)))
        stats = await fs.request("stats.get")
        show(f"{count} random frames on the board ROUTER", fig, stats)
        counted = stats["commands"]["board"] + stats["board_link"]["drops"].get("rate_limited", 0)
        print(f"   every frame counted: sent {fig['attack']['sent']}, answered + rate_limited {counted}")
    master, path = _pty()
    try:
        async with Flatsat(f"serial://{path}?baud=921600") as fs:
            fig = await measured(fs, attack("random-frames", f"fd:{master}", "--count", str(count), pass_fd=master))
            await asyncio.sleep(2)
            stats = await fs.request("stats.get")
            show(f"{count} random byte strings on the serial line", fig, stats)
    finally:
        os.close(master)


async def curve() -> None:
    from urllib.parse import quote

    import zmq

    from emulator.transports import parse_transport_url
    from emulator.transports.zmq import key_fingerprint

    public, secret = zmq.curve_keypair()
    allowed, _ = zmq.curve_keypair()
    url = "zmq+tcp://127.0.0.1:0?curve_secret=" + quote(secret.decode(), safe="") + "&curve_clients=" + \
        quote(allowed.decode(), safe="")
    async with Flatsat(url) as fs:
        base = parse_transport_url(fs.board_url).replace(curve_secret=None, curve_clients=None,
                                                         curve_server=public.decode(), connect_timeout_s=3)
        for label, u in (("unlisted client key", base), ("wrong server key", base.replace(curve_server=allowed.decode()))):
            t0 = time.monotonic()
            try:
                await (await connect(u)).aclose()
                outcome = "ACCEPTED (bad)"
            except Exception as exc:  # noqa: BLE001 - the error text is the result
                outcome = f"refused in {time.monotonic() - t0:.2f} s: {exc}"
            print(f"\n== CURVE, {label}: {outcome[:400]}")
        stats = await fs.request("stats.get")
        print(f"   board_link drops {stats['board_link']['drops']} (server key fingerprint {key_fingerprint(public)})")


async def noisy(ber: float = 1e-4) -> None:
    """The boards on a noisy serial line: latchup.toml (2 h of sim time) through the HIL runner, bit errors at
    ``ber`` both ways on the pty, the reference board and the C stub, each as its own process (`{fd}`)."""
    import shutil
    import tempfile

    from emulator.reference_policy import REFERENCE
    from hil.runner import ScenarioRun
    from hil.scenario import load_scenario

    build = Path(tempfile.mkdtemp(prefix="torture-c-"))
    make = await asyncio.create_subprocess_exec("make", "-s", "-C", str(ROOT / "firmware_stubs" / "c"),
                                                f"BUILD={build}")
    if await make.wait() != 0:
        raise RuntimeError("building the C stub failed")
    boards = {
        "reference board": ((f"{sys.executable} -m firmware_stubs.reference --url serial+fd://{{fd}}?baud=921600"
                             " --timeout 0.02 --resync-after 0.1"), REFERENCE.period_s),
        "C stub": (f"{build / 'flatsat_board_posix'} --fd {{fd}} --baud 921600 --timeout-ms 100", REFERENCE.period_s),
    }
    for label, (cmd, period_s) in boards.items():
        scenario = load_scenario(ROOT / "configs" / "scenarios" / "latchup.toml")
        scenario.overrides["telemetry.rates_hz"] = {"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1,
                                                    "thermal.telemetry": 0.0, "sim.clock": 0.0}
        steps_at: list[int] = []
        run = ScenarioRun(scenario, board_cmd=cmd, record_dir=build, line_options=f"ber={ber:g}&ber_seed=11&pace=0")
        run.emu.message_hooks.append(lambda t_ns, plane, direction, msg, steps_at=steps_at: steps_at.append(
            t_ns) if (plane == "board" and direction == "in" and msg.topic == "board.step") else None)
        t0 = time.monotonic()
        result = await run.run()
        wall_s = time.monotonic() - t0
        log = result.board_log.read_text(errors="replace") if result.board_log else ""
        starts = len(re.findall(r"^--- start ", log, flags=re.MULTILINE))
        turns = [k * round(period_s * 1e9) for k in range(round(scenario.duration_s / period_s))]
        in_step = steps_at[: len(turns)] == turns and len(steps_at) - len(turns) in (0, 1)
        summary = [ln for ln in log.splitlines() if ln.startswith("reference: ") or "stopped (" in ln]
        stats = run.emu.board_link.stats
        passed = sum(v.passed for v in result.verdicts)
        print(f"\n== {label} on a line with BER {ber:g} both ways, latchup.toml ({scenario.duration_s / 3600:g} h "
              f"of sim time, {wall_s:.0f} s wall)")
        print(f"   processes started {starts}, error {result.error}, sim time reached {result.t_end_s:g} s, "
              f"every turn stepped once: {in_step} ({len(steps_at)} steps), requirements passed "
              f"{passed}/{len(result.verdicts)}")
        print(f"   emulator dropped {stats.bad_frames} damaged frames, decode errors {stats.decode_errors}")
        print(f"   board: {summary[-1] if summary else '(no summary line)'}")
    shutil.rmtree(build, ignore_errors=True)


ATTACKS = {"flood": lambda: flood("ping-flood"), "garbage": lambda: flood("garbage-flood"), "bombs": bombs,
           "names": names, "subscription": subscription, "subflood": subflood, "mute": mute,
           "serialflood": serial_flood, "frames": frames, "curve": curve,
           "noisy": noisy}


async def main(which: list[str]) -> None:
    print(f"flatsat torture, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; emulator: `flatsat run` "
          "realtime, 100 Hz steps, sim.clock at 100 Hz")
    if set(which) != {"noisy"}:  # the noisy line is about the boards: no emulator under attack
        await baseline()
    for name in which or list(ATTACKS):
        await ATTACKS[name]()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("attacks", nargs="*", metavar="ATTACK", help=f"attacks to run (default: all): {', '.join(ATTACKS)}")
    chosen = ap.parse_args().attacks
    unknown = [a for a in chosen if a not in ATTACKS]
    if unknown:  # (argparse's choices refuse an empty list with nargs="*" on Python 3.11)
        ap.error(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    asyncio.run(main(chosen))
