"""The C firmware stub (firmware_stubs/c) against flatsat: its codec against Python's, and the real emulator over a pty.

The stub is built with the system C compiler (``cc``), exactly as firmware_stubs/c/Makefile does. The codec tests
drive the POSIX program's ``--transcode`` mode: frames made by Python are decoded by the C core (COBS, CRC-16,
msgpack, envelope) and written again by the C writer, then compared with the originals byte for byte. The live
tests run the stub on the master side of a pty while the emulator (in-process) holds the slave through
``serial://`` (the real serial code path, with ``pace=1`` so bytes move at the line rate), in a lockstep run that
the board drives with ``board.step``. One of them is a standard HIL scenario (configs/scenarios/latchup.toml) run by
``hil.runner.run_scenario`` with the stub as the board at a ``serial://`` board URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
from scenario_tools import cut, one_sample_per_turn
from transports.conftest import NullModem
from transports.test_line_noise import bit_flipper

from emulator.clock import NS_PER_S
from emulator.config import load_config
from emulator.errors import CodecError
from emulator.protocol.catalogue import Plane
from emulator.protocol.codec import decode_message, encode_message
from emulator.protocol.envelope import Message
from emulator.protocol.framing import FrameDecoder, crc16, encode_frame
from emulator.recorder import read_recording
from emulator.reference_policy import REFERENCE
from emulator.runtime import Emulator
from firmware_stubs.jobcheck import digest_of, expected_result
from hil.runner import ScenarioRun, run_scenario
from hil.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "firmware_stubs" / "c"
CONFIG = ROOT / "configs" / "suncatcher-proto.toml"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
#: the portable core: every port (main_posix.c, targets/*) builds these
CORE = ("flatsat_board.c", "fsb_jobcheck.c")

#: messages in the codec round-trip
N_MESSAGES = 300
#: frame limit given to both decoders in the damaged-stream test (small, so oversized frames occur)
MAX_FRAME_BYTES = 1500
#: wall-clock backstop for one live run; a healthy run takes a fraction of it
WALL_LIMIT_S = 90.0
#: the stub's default thresholds: the one reference policy (fsb_policy.h, generated from it)
SOC_ON = REFERENCE.soc_on
TEMP_HIGH_DEGC = REFERENCE.temp_high_degc
TEMP_LOW_DEGC = REFERENCE.temp_low_degc
#: the stub decides on accel.status.die_temp_degc, which has 1 degC resolution (docs/protocol-accelerator.md)
DIE_SENSOR_TOL_DEGC = 1.0
#: battery gauge error allowed when checking the stub's SoC decisions against ground truth: the gauge drifts
#: 1 mA/Ah per hour since the last full charge (sensors defaults), under 0.5 % over one orbit, plus noise
SOC_GAUGE_TOL = 0.02
WORKING = ("idle", "busy", "throttled")


# -- building --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stub_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler: `cc` is not on PATH, so the C stub (firmware_stubs/c) cannot be built; install "
                    "one with `apt-get install -y gcc libc6-dev make` (as root)")
    out = tmp_path_factory.mktemp("c-stub")
    if shutil.which("make"):
        # explicit CC and CFLAGS: the build must not depend on what the environment exports
        cmd = ["make", "-C", str(C_DIR), f"BUILD={out}", f"CC={cc}", "CFLAGS=-O2"]
    else:
        cmd = [cc, *CFLAGS, "-o", str(out / "flatsat_board_posix"), *(str(C_DIR / f) for f in CORE),
               str(C_DIR / "main_posix.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"building the C stub failed:\n{proc.stdout}\n{proc.stderr}"
    return out / "flatsat_board_posix"


def test_build_is_warning_free_with_strict_flags(stub_bin: Path) -> None:
    """The core compiles clean with the warnings an 8/16-bit target would trip on (conversions, shadowing)."""
    flags = [*CFLAGS, "-pedantic", "-Wshadow", "-Wconversion", "-Wsign-conversion", "-Wcast-qual",
             "-Wstrict-prototypes", "-Wmissing-prototypes"]
    for naive in ([], ["-DFLATSAT_NAIVE"]):
        for source in CORE:
            proc = subprocess.run(["cc", *flags, *naive, "-c", "-o", os.devnull, str(C_DIR / source)],
                                  capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"{source} {naive}: {proc.stderr}"


# -- the job check: C against the documented recipe --------------------------------------------------------------
def test_sha256_is_fips_180_4(stub_bin: Path) -> None:
    """The core's SHA-256 against hashlib: the standard vectors and random inputs across the block boundaries."""
    rng = random.Random(180)
    inputs = [b"", b"abc", b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"]
    inputs += [rng.randbytes(n) for n in (1, 55, 56, 57, 63, 64, 65, 119, 120, 1024, 100_003)]
    for data in inputs:
        out = subprocess.run([str(stub_bin), "--sha256"], input=data, capture_output=True, check=True, timeout=30)
        assert out.stdout.decode().strip() == hashlib.sha256(data).hexdigest(), len(data)


def test_job_digest_is_the_documented_one(stub_bin: Path) -> None:
    """What the board recomputes for accel.job.done is docs/protocol-accelerator.md's digest (the Python checker's),
    for both kinds and seeds across the whole uint64 range."""
    rng = random.Random(16)
    seeds = [0, 1, 2**31, 2**63 - 1, 2**64 - 1, *(rng.randrange(2**64) for _ in range(10))]
    for seed in seeds:
        for kind in ("inference", "training"):
            out = subprocess.run([str(stub_bin), "--job-digest", str(seed), kind], capture_output=True, text=True,
                                 check=True, timeout=30)
            assert out.stdout.strip() == digest_of(expected_result(seed, kind)), (seed, kind)
    bad = subprocess.run([str(stub_bin), "--job-digest", "-1", "inference"], capture_output=True, text=True,
                         check=False, timeout=30)
    assert bad.returncode == 2 and "SEED" in bad.stderr


# -- codec: C against Python -----------------------------------------------------------------------------------
def transcode(stub_bin: Path, stream: bytes, max_frame: int = 65536) -> tuple[bytes, dict[str, int]]:
    proc = subprocess.run([str(stub_bin), "--transcode", "--max-frame", str(max_frame)], input=stream,
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", proc.stderr.decode())}
    return proc.stdout, counts


def random_value(rng: random.Random, depth: int, single: bool) -> Any:
    kind = rng.choice(["nil", "bool", "int", "int", "float", "str", "str", "bin", "list", "dict"]
                      if depth < 4 else ["nil", "bool", "int", "float", "str"])
    if kind == "nil":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        # every msgpack int width, both signs, and the edges of each
        edge = rng.choice([0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32, 2**63, 2**64])
        v = rng.choice([rng.randint(-edge, edge), edge - 1, -edge, rng.randint(-(2**63), 2**64 - 1)])
        return max(-(2**63), min(2**64 - 1, v))
    if kind == "float":
        if single:  # values a float32 holds exactly (any bit pattern: NaNs, subnormals, infinities)
            return rng.choice([struct.unpack("<f", rng.randbytes(4))[0], 1.5, -0.0, math.inf])
        return rng.choice([rng.uniform(-1e6, 1e6), rng.gauss(0, 1e-300), math.inf, -math.inf, 0.0, -0.0,
                           struct.unpack("<d", rng.randbytes(8))[0]])
    if kind == "str":
        n = rng.choice([0, 1, 31, 32, 200, 255, 256, 300])
        return "".join(rng.choice("aZ09_. é€😀") for _ in range(n))
    if kind == "bin":
        n = rng.choice([0, 1, 253, 254, 255, 508, 600])
        # runs of non-zero bytes exercise COBS's full (0xFF) blocks, including one ending the frame
        return bytes(rng.randint(1, 255) for _ in range(n)) if rng.random() < 0.5 else rng.randbytes(n)
    if kind == "list":
        return [random_value(rng, depth + 1, single) for _ in range(rng.choice([0, 1, 3, 15, 16, 20]))]
    return {f"k{i}_{rng.randint(0, 99)}": random_value(rng, depth + 1, single)
            for i in range(rng.choice([0, 1, 5, 15, 16]))}


def random_envelope(rng: random.Random) -> bytes:
    # msgpack-python writes floats as float64 unless told otherwise: some messages carry float32 instead
    single = rng.random() < 0.2
    env = {"topic": rng.choice(["eps.telemetry", "reply", "accel.job.done", "x" * 128]), "v": 1,
           "seq": rng.randint(0, 2**63 - 1), "t_ns": rng.choice([0, 1500000000, rng.randint(0, 2**63 - 1)]),
           "src": rng.choice(["", "emulator", "jetson-orin-1"]),
           "payload": {f"f{i}": random_value(rng, 1, single) for i in range(rng.randint(0, 12))}}
    return msgpack.packb(env, use_bin_type=True, use_single_float=single)


def test_crc_is_genibus_check_value(stub_bin: Path) -> None:
    out = subprocess.run([str(stub_bin), "--crc16"], input=b"123456789", capture_output=True, check=True)
    assert out.stdout.strip() == b"D64E"
    assert crc16(b"123456789") == 0xD64E


def test_documented_example_frame_is_reproduced_byte_for_byte(stub_bin: Path) -> None:
    """docs/protocol.md section 5: the ping frame, decoded and re-encoded by the C core."""
    frame = encode_frame(encode_message(Message("ping", {}, seq=1, t_ns=1_500_000_000, src="board")))
    assert frame[:2] == b"\x1e\x86" and frame[-3:] == b"\x75\x6d\x00"
    out, counts = transcode(stub_bin, frame)
    assert out == frame
    assert counts["frames"] == 1


def test_random_messages_round_trip_between_c_and_python(stub_bin: Path) -> None:
    """Python encodes, C decodes and re-encodes, Python decodes: bytes and values identical, 300 messages."""
    rng = random.Random(20261125)
    messages = [random_envelope(rng) for _ in range(N_MESSAGES)]
    stream = b"".join(encode_frame(m) for m in messages)
    out, counts = transcode(stub_bin, stream)
    assert counts == {"frames": N_MESSAGES, "bad_cobs": 0, "too_short": 0, "bad_crc": 0, "oversized": 0,
                      "codec_errors": 0}
    # what C framed, Python's decoder takes back: every frame intact, in order, byte-identical
    dec = FrameDecoder()
    back = dec.feed(out)
    assert dec.stats.bad_frames == 0
    assert out == stream  # COBS, CRC and the smallest msgpack encodings match Python's exactly
    assert back == messages
    for raw in back:
        msg = decode_message(raw)  # the emulator's strict envelope check accepts what C wrote
        assert msg.v == 1


def test_damaged_stream_is_dropped_and_counted_like_python(stub_bin: Path) -> None:
    """Bit flips, truncation, line noise and oversized frames: C delivers and counts exactly what Python does."""
    rng = random.Random(7)
    parts = []
    for _ in range(N_MESSAGES):
        msg = random_envelope(rng)
        frame = bytearray(encode_frame(msg))
        damage = rng.choice(["none", "none", "flip", "truncate", "noise", "short", "code"])
        if damage == "flip":
            i = rng.randrange(len(frame) - 1)
            frame[i] ^= 1 << rng.randrange(8)
        elif damage == "truncate":
            frame = frame[: rng.randrange(1, len(frame) - 1)] + b"\x00"
        elif damage == "noise":
            frame = bytearray(rng.randbytes(rng.randint(1, 20)).replace(b"\x00", b"\x55")) + frame
        elif damage == "short":
            frame = bytearray(b"\x02\x11\x00")  # one byte after COBS: shorter than a CRC
        elif damage == "code":
            frame[0] = min(255, len(frame) + 5)  # a code byte pointing past the end
        parts.append(bytes(frame))
        if rng.random() < 0.1:
            parts.append(b"\x00\x00")  # idle fill between frames
    stream = b"".join(parts)
    py = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES)
    delivered = py.feed(stream)
    valid = []
    codec_errors = 0
    for raw in delivered:
        try:
            decode_message(raw)
            valid.append(raw)
        except CodecError:  # a damaged frame that happened to pass its CRC: both sides refuse the envelope
            codec_errors += 1
    out, counts = transcode(stub_bin, stream, max_frame=MAX_FRAME_BYTES)
    s = py.stats
    assert counts == {"frames": s.frames, "bad_cobs": s.bad_cobs, "too_short": s.too_short, "bad_crc": s.bad_crc,
                      "oversized": s.oversized, "codec_errors": codec_errors}
    assert s.bad_cobs and s.bad_crc and s.too_short and s.oversized  # the stream exercised every reason
    assert FrameDecoder().feed(out) == valid


def test_garbage_inside_good_frames_is_refused_without_crashing(stub_bin: Path) -> None:
    """Mutated msgpack behind a valid CRC: the C envelope decoder refuses it or copies it, never crashes.

    Every mutation the emulator's strict decoder accepts, C accepts too and writes back with the same values.
    C may accept a little more: it checks structure, not the UTF-8 inside strings (a board does not need to).
    """
    rng = random.Random(11)
    mutated = []
    for _ in range(N_MESSAGES):
        raw = bytearray(random_envelope(rng))
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(["flip", "cut", "byte"])
            if op == "flip":
                i = rng.randrange(len(raw))
                raw[i] ^= 1 << rng.randrange(8)
            elif op == "cut" and len(raw) > 2:
                del raw[rng.randrange(1, len(raw)):]
            else:
                raw[rng.randrange(len(raw))] = rng.choice([0xC1, 0xDD, 0xDF, 0xDB, 0xCF, 0xD3, 0xC7, 0xFF])
        mutated.append(bytes(raw))
    # a known-good marker after each mutated frame tells which ones C wrote back
    markers = [encode_message(Message("marker", {}, seq=i, src="test")) for i in range(N_MESSAGES)]
    stream = b"".join(encode_frame(m) + encode_frame(k) for m, k in zip(mutated, markers, strict=True))
    out, counts = transcode(stub_bin, stream)
    assert counts["frames"] == 2 * N_MESSAGES
    copies: list[bytes | None] = []
    pending: bytes | None = None
    for raw in FrameDecoder().feed(out):
        if raw in markers:
            copies.append(pending)
            pending = None
        else:
            pending = raw
    assert len(copies) == N_MESSAGES
    accepted_by_python = 0
    for original, copy in zip(mutated, copies, strict=True):
        try:
            want = decode_message(original)
        except CodecError as exc:
            # the one documented difference: C does not check UTF-8 inside strings
            assert copy is None or "UnicodeDecodeError" in exc.message, exc.message
            continue
        accepted_by_python += 1
        assert copy is not None, f"C refused an envelope the emulator accepts: {original.hex()}"
        got = decode_message(copy)
        assert (got.topic, got.seq, got.t_ns, got.src) == (want.topic, want.seq, want.t_ns, want.src)
        assert msgpack.packb(got.payload) == msgpack.packb(want.payload)  # bytes: NaN == NaN here
    assert counts["codec_errors"] > N_MESSAGES // 2  # most mutations break the envelope
    assert accepted_by_python > 0, accepted_by_python


# -- live: the emulator over a pty -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A board request as the emulator handled it, with the ground truth at that moment."""

    t_ns: int
    topic: str
    payload: dict[str, Any]
    ok: bool
    soc: float  #: true state of charge, 0..1
    sunlit: bool  #: the spacecraft is in sunlight (environment truth)
    die_temp_degc: float  #: true die temperature


class WatchedEmulator(Emulator):
    """The runtime plus a record of the board's requests; adds no behaviour."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hello = asyncio.Event()
        self.requests: list[Request] = []
        #: called with every board request, after it was handled
        self.watchers: list[Callable[[Request], None]] = []

    def handle_request(self, msg: Message, plane: Plane) -> Message:
        reply = super().handle_request(msg, plane)
        if plane == Plane.BOARD:
            ok = bool(reply.payload["ok"])
            env = self.model.truth()["environment"] if msg.topic == "eps.rail.set" else {}
            req = Request(self.clock.now_ns(), msg.topic, dict(msg.payload), ok, self.model.power.soc,
                          env.get("sunlit_frac", 0.0) > 0.5, self.model.accel.die_temp_degc)
            self.requests.append(req)
            for watch in list(self.watchers):
                watch(req)
            if msg.topic == "board.hello" and ok:
                self.hello.set()
        return reply

    def sent(self, topic: str, **match: Any) -> list[int]:
        """Sim times of accepted board requests of ``topic`` whose payload has ``match``."""
        return [r.t_ns for r in self.requests
                if r.topic == topic and r.ok and all(r.payload.get(k) == v for k, v in match.items())]


@dataclass
class StubRun:
    emu: WatchedEmulator
    proc: asyncio.subprocess.Process
    stderr_path: Path
    summary: dict[str, int] = field(default_factory=dict)

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    async def run_for(self, duration_s: float) -> None:
        """Sim time advances only as the stub steps it; a dead or stuck stub fails the test, not hangs it."""
        try:
            async with asyncio.timeout(WALL_LIMIT_S):
                await self.emu.run_for(duration_s)
        except TimeoutError:
            pytest.fail(f"the stub stopped stepping at t={self.emu.clock.now_ns() / NS_PER_S:g} s "
                        f"(exit code {self.proc.returncode}); its log:\n{self.log()}")

    async def run_until_exit(self, max_sim_s: float) -> int:
        """Run the emulator (at most ``max_sim_s`` of sim time) until the stub exits by itself (``--max-turns``);
        its exit code."""
        runner = asyncio.create_task(self.emu.run_for(max_sim_s), name="test-c-stub-emulator")
        try:
            async with asyncio.timeout(WALL_LIMIT_S):
                return await self.proc.wait()
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def stop(self) -> dict[str, int]:
        """SIGTERM the stub; it prints its counters on the way out."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await self.proc.wait()
        return self.parse_summary()

    def parse_summary(self) -> dict[str, int]:
        self.summary = read_summary(self.stderr_path)
        return self.summary


def read_summary(stderr_path: Path) -> dict[str, int]:
    """The counters of the stub's last summary line (it prints one on the way out)."""
    lines = [ln for ln in stderr_path.read_text().splitlines() if "stopped (" in ln]
    assert lines, f"the stub printed no summary:\n{stderr_path.read_text(errors='replace')[-4000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}


@contextlib.asynccontextmanager
async def stub_on_pty(stub_bin: Path, tmp_path: Path, *, baud: int, pace: bool, overrides: dict[str, Any],
                      args: tuple[str, ...] = ()) -> AsyncIterator[StubRun]:
    """Emulator on the pty's slave (``serial://``), the C stub on its master (``--fd``)."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo or line editing before the emulator's pyserial configures it
    url = f"serial://{os.ttyname(slave)}?baud={baud}&pace={int(pace)}"
    cfg = load_config(CONFIG, overrides={"links.board": url, "links.control": None, "sim.mode": "lockstep",
                                         "sim.lockstep_source": "board", "telemetry.truth_rate_hz": 0.0,
                                         **overrides})
    emu = WatchedEmulator.from_config(cfg, record_path=None)
    stderr_path = tmp_path / "c-stub.log"
    proc = None
    try:
        await emu.start()
        with stderr_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                str(stub_bin), "--fd", str(master), "--baud", str(baud), "-v", *args, pass_fds=(master,),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        os.close(master)  # the stub holds it now: when the stub exits the emulator sees the line go away
        master = -1
        run = StubRun(emu, proc, stderr_path)
        try:
            async with asyncio.timeout(WALL_LIMIT_S):
                await emu.hello.wait()
        except TimeoutError:
            pytest.fail(f"no board.hello from the stub (exit code {proc.returncode}):\n{run.log()}")
        yield run
    finally:
        if proc is not None:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        if master >= 0:
            os.close(master)
        await emu.aclose()
        os.close(slave)


async def test_stub_says_hello_steps_time_and_gets_every_command_answered(stub_bin: Path, tmp_path: Path) -> None:
    """115200 baud, paced, default telemetry rates (1 Hz): 30 turns of 1 s, then the stub stops by itself."""
    turns, period_s = 30, 1.0
    async with stub_on_pty(stub_bin, tmp_path, baud=115200, pace=True, overrides={},
                           args=("--period", str(period_s), "--max-turns", str(turns))) as run:
        emu = run.emu
        hello = next(r.payload for r in emu.requests if r.topic == "board.hello")
        assert hello == {"name": "c-stub", "version": "1.0.0", "capabilities": ["lockstep"]}
        assert emu.stats.boards_seen == {"c-stub": "1.0.0"}
        code = await run.run_until_exit(10 * turns * period_s)
        summary = run.parse_summary()
        assert code == 0, run.log()
        # sim time moved only by the stub's steps: the lockstep limit is the sum of its board.step durations
        steps = [r.payload["duration_s"] for r in emu.requests if r.topic == "board.step" and r.ok]
        assert steps == [period_s] * turns
        assert summary["steps"] == summary["turns"] == turns
        assert emu.clock.status()["limit_ns"] == round(turns * period_s * NS_PER_S)
        assert emu.clock.now_ns() <= emu.clock.status()["limit_ns"]
        # every request was answered and both sides count the same
        assert summary["requests"] == emu.stats.commands["board"] == len(emu.requests)
        assert summary["acked"] + summary["refused"] == summary["requests"]
        assert summary["refused"] == emu.stats.rejected["board"] == 0
        assert summary["timeouts"] == summary["decode_errors"] == summary["bad_frames"] == 0
        assert emu.board_link.stats.bad_frames == emu.board_link.stats.decode_errors == 0
        # it read the telemetry (eps, thermal, sun, accel.status at 1 Hz) and kept work queued
        assert summary["telemetry"] >= 4 * (turns - 1)
        assert emu.sent("eps.rail.set", rail="payload", on=True)
        assert summary["jobs_submitted"] >= 2 and emu.sent("accel.job.submit")


async def test_a_step_publishing_more_telemetry_than_the_line_queues_still_ends_in_sim_waiting(
        stub_bin: Path, tmp_path: Path) -> None:
    """Regression: default 1 Hz telemetry, so each 10 s step publishes ~50 frames at once, more than the serial link
    queues (hwm=32). The link used to count the step's sim.waiting as telemetry and drop it with the overflow, and
    the stub then learnt that the clock waited only by pinging after its 5 s request time-out, every turn."""
    turns = 6
    async with stub_on_pty(stub_bin, tmp_path, baud=921600, pace=True, overrides={},
                           args=("--max-turns", str(turns))) as run:
        emu = run.emu
        code = await run.run_until_exit(10 * turns * 10.0)
        summary = run.parse_summary()
        assert code == 0, run.log()
        assert emu.board_link.stats.dropped_tx > 0  # telemetry did overflow the link's queue
        # ...but every turn began on a sim.waiting: none was found by a ping
        assert summary["steps"] == turns
        assert summary["missed_waits"] == 0, run.log()
        assert not emu.sent("ping")
        assert summary["timeouts"] == summary["bad_frames"] == emu.board_link.stats.bad_frames == 0


@pytest.mark.slow
async def test_hil_two_orbits_with_hang_latchup_and_latched_rail(stub_bin: Path, tmp_path: Path) -> None:
    """Two orbits at 921600 baud, paced: a SEFI hang, a latch-up and a rail short; ground truth judges the stub."""
    period_s = 10.0
    orbit_s = 5862.0  # configs/suncatcher-proto.toml sim.duration_s: one orbit at 650 km
    # the control period is 10 s, so 0.1 Hz telemetry gives the stub one fresh sample per turn and keeps two
    # orbits of UART traffic (~1.7 kB per turn) near 20 s of wall time
    rates = {"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1, "thermal.telemetry": 0.0, "sim.clock": 0.0, "sim.links": 0.1}
    async with stub_on_pty(stub_bin, tmp_path, baud=921600, pace=True,
                           overrides={"telemetry.rates_hz": rates}) as run:
        emu = run.emu
        power, acc = emu.model.power, emu.model.accel
        safe_v = power.th["safe_v"]  # resolved EPS thresholds (pack volts)
        seen: dict[str, Any] = {"min_bus_v": math.inf, "modes": set(), "latched_at": None, "working_at": []}

        def observe(t_ns: int) -> None:
            seen["min_bus_v"] = min(seen["min_bus_v"], power.bus_v)
            seen["modes"].add(power.mode_name)
            if power.rail("payload").latched and seen["latched_at"] is None:
                seen["latched_at"] = t_ns
            if acc.state.value in WORKING:
                seen["working_at"].append(t_ns)

        emu.add_observer(observe)
        await run.run_for(600)
        emu.inject_fault("radiation.sefi", {"chip": 0})  # the board hangs until reset or power cycle
        await run.run_for(600)
        jobs_before_sel = acc.jobs_done
        emu.inject_fault("radiation.sel", {"chip": 0})  # 60 A more on the rail: its limiter must cut it
        await run.run_for(600)
        # 100 A on the payload rail for 10 s: the limiter trips, retries 3 times, then latches off for good
        emu.inject_fault("eps.rail.short", {"rail": "payload", "extra_a": 100.0}, duration_s=10.0)
        await run.run_for(2 * orbit_s - 1800)
        summary = await run.stop()
        truth = emu.model.truth()

        assert emu.clock.now_ns() == round(2 * orbit_s * NS_PER_S)
        rad = truth["accelerator"]["radiation"]
        events = {ev["kind"]: ev for ev in rad["recent"] if ev["kind"] in ("sefi", "sel")}
        # the hang: handled by the stub's accel.reset at its next turn
        sefi = events["sefi"]
        assert sefi["effect"] == "hang" and sefi["handled"] and sefi["how"] == "reset"
        assert sefi["t_handled_ns"] - sefi["t_ns"] <= round(period_s * NS_PER_S)
        assert emu.sent("accel.reset") == [sefi["t_handled_ns"]]
        # the latch-up: cut by the rail limiter, then the board booted and worked again
        sel = events["sel"]
        assert sel["effect"] == "recovered" and sel["how"] == "rail_cut"
        back = [t for t in seen["working_at"] if t > sel["t_ns"]]
        assert back and back[0] - sel["t_ns"] <= round(60 * NS_PER_S)  # 1 s limiter retry + 20 s boot + a turn
        assert acc.jobs_done > jobs_before_sel
        assert not [ev for ev in rad["unhandled"] if ev["kind"] in ("sefi", "sel")]
        # the latched rail: the stub reset its limiter and the payload is back
        assert seen["latched_at"] is not None
        resets = emu.sent("eps.rail.reset", rail="payload")
        assert resets and resets[0] >= seen["latched_at"]
        rail = truth["power"]["rails"]["payload"]
        assert rail["on"] and not rail["latched"] and rail["trips"] >= 4
        assert truth["accelerator"]["state"] in WORKING
        # energy: the bus never fell to the EPS's payload-shed threshold, so the EPS never had to shed
        assert seen["min_bus_v"] > safe_v
        assert seen["modes"] <= {"full", "normal"}
        # the stub's own account agrees with the emulator's
        assert summary["hang_resets"] >= 1 and summary["rail_resets"] >= 1
        assert summary["refused"] == emu.stats.rejected["board"]
        assert summary["decode_errors"] == summary["bad_frames"] == summary["timeouts"] == 0
        assert emu.board_link.stats.bad_frames == 0


async def test_stub_sheds_the_payload_on_a_low_battery_and_restores_it_with_hysteresis(
        stub_bin: Path, tmp_path: Path) -> None:
    """Start at 25 % charge: the stub switches its rail off, and on again only at 55 % and in sunlight."""
    rates = {"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1, "thermal.telemetry": 0.0, "sim.clock": 0.0, "sim.links": 0.1}
    async with stub_on_pty(stub_bin, tmp_path, baud=921600, pace=False,
                           overrides={"telemetry.rates_hz": rates, "power.battery.initial_soc": 0.25}) as run:
        emu = run.emu
        power = emu.model.power
        safe_v = power.th["safe_v"]  # resolved EPS thresholds (pack volts)
        min_bus = [math.inf]
        emu.add_observer(lambda t: min_bus.__setitem__(0, min(min_bus[0], power.bus_v)))
        await run.run_for(5862.0)
        summary = await run.stop()

        offs = emu.sent("eps.rail.set", rail="payload", on=False)
        assert offs and offs[0] <= round(20 * NS_PER_S)  # within its first turns
        ons = [r for r in emu.requests
               if r.topic == "eps.rail.set" and r.ok and r.payload == {"rail": "payload", "on": True} and r.t_ns > offs[0]]
        assert ons, "the stub never switched its rail back on in an orbit"
        assert ons[0].soc >= SOC_ON - SOC_GAUGE_TOL
        assert ons[0].sunlit
        assert power.rail("payload").on
        assert min_bus[0] > safe_v
        assert summary["sheds"] == 1


async def test_stub_holds_the_die_below_the_slowdown_with_dvfs(stub_bin: Path, tmp_path: Path) -> None:
    """A radiator cut to 0.5 m2 (from 1.8 m2): the stub steps DVFS down above 80 degC and up below 70 degC.

    Busy at the `high` level the die climbs through 80 degC within the orbit; the board's own slowdown at
    87 degC must never be needed.
    """
    rates = {"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1, "thermal.telemetry": 0.0, "sim.clock": 0.0, "sim.links": 0.1}
    surfaces = load_config(CONFIG).satellite.thermal.surfaces
    radiator = next(i for i, surface in enumerate(surfaces) if surface.node == "radiator")
    overrides = {"telemetry.rates_hz": rates, f"thermal.surfaces[{radiator}].area_m2": 0.5}
    async with stub_on_pty(stub_bin, tmp_path, baud=921600, pace=False, overrides=overrides) as run:
        emu = run.emu
        acc = emu.model.accel
        seen = {"max_die_degc": -math.inf, "throttle": set()}

        def observe(t_ns: int) -> None:
            seen["max_die_degc"] = max(seen["max_die_degc"], acc.die_temp_degc)
            seen["throttle"].add(acc.throttle)

        emu.add_observer(observe)
        await run.run_for(5862.0)
        summary = await run.stop()

        dvfs = [r for r in emu.requests if r.topic == "accel.dvfs.set" and r.ok]
        assert [r.payload["level"] for r in dvfs[:3]] == ["mid", "high", "mid"]
        for r in dvfs:
            if r.payload["level"] == "mid":  # down: the die was hot
                assert r.die_temp_degc > TEMP_HIGH_DEGC - DIE_SENSOR_TOL_DEGC
            else:  # up: it had cooled
                assert r.die_temp_degc < TEMP_LOW_DEGC + DIE_SENSOR_TOL_DEGC
        assert seen["max_die_degc"] < emu.model.config.accelerator.sw_slowdown_degc
        assert seen["throttle"] == {0}  # no thermal slowdown was ever in force
        assert summary["dvfs_changes"] == len(dvfs)


# -- a standard scenario through the HIL runner ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_latchup_scenario_passes_with_the_stub_as_the_board_through_the_hil_runner(
        stub_bin: Path, tmp_path: Path) -> None:
    """configs/scenarios/latchup.toml by ``hil.runner.run_scenario``, the stub as the board over a pty.

    The board command has ``{fd}``: the runner opens a pty pair, its emulator listens on the slave
    (``serial://...?baud=921600&pace=1``, a board URL as for a real board) and the stub inherits the master. A
    latch-up at 30 min trips the payload rail's limiter, set to latch at the first trip: the board must reset the
    rail (the stub's ``eps.rail.reset`` on a latched rail) to have the accelerator powered again within 2 min and
    reach 450 k units in 2 h. The scenario is run as it is (config, seed, timeline, requirements) except for one
    bench setting: board telemetry at 0.1 Hz, a fresh sample for each of the stub's 10 s turns. At the default
    1 Hz it passes too, but a step publishes ~14 kB of telemetry, which the paced line carries (what its queue
    holds) at 92 kB/s: the 2 h take 80-90 s of wall time instead of ~14 s.
    """
    scenario = load_scenario(ROOT / "configs" / "scenarios" / "latchup.toml")
    scenario.overrides["telemetry.rates_hz"] = {"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1,
                                                "thermal.telemetry": 0.0, "sim.clock": 0.0, "sim.links": 0.1}
    fds_before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    async with asyncio.timeout(240):
        result = await run_scenario(scenario, board_cmd=f"{stub_bin} --fd {{fd}} --baud 921600 -v", seed=None,
                                    record_dir=tmp_path)
    assert result.board_log is not None
    log = result.board_log.read_text(errors="replace")
    assert result.error is None, f"{result.error}\nthe stub's log:\n{log[-4000:]}"
    assert re.search(r"--fd \d+ --baud 921600", log), log[:400]  # {fd} became the inherited master
    failed = [f"{v.label}: {v.reason}" for v in result.verdicts if not v.passed]
    assert not failed, f"{failed}\nthe stub's log:\n{log[-4000:]}"
    assert len(result.verdicts) == len(scenario.requirements) == 3
    assert result.t_end_s == 7200.0
    assert [text for _, text in result.timeline_log] == ["fault radiation.sel() [latch-up]"]
    assert result.recording is not None and result.recording.stat().st_size > 0
    # the runner stopped the stub (SIGTERM: it prints its summary) and closed both ends of the pty
    summary = read_summary(result.board_log)
    # the stub stepped all of sim time (t_end above; the runner may close the line after the 720th step and
    # before its reply reaches the stub, which counts a step on the reply), reset the latched rail, and the
    # line lost nothing
    assert summary["steps"] in (719, 720), log[-4000:]
    assert summary["rail_resets"] >= 1, log[-4000:]
    assert summary["decode_errors"] == summary["bad_frames"] == summary["timeouts"] == 0, log[-4000:]
    if fds_before is not None:
        assert set(os.listdir("/proc/self/fd")) <= fds_before, "the runner left descriptors open"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_stub_survives_ber_1e_4_both_ways_stays_in_step_and_still_passes_latchup(
        stub_bin: Path, tmp_path: Path) -> None:
    """The latch-up run above to 1 h (the trip at 30 min and the recovery), with bit errors at 1e-4 injected both
    ways on the pty (``line_options``): one process throughout, every 10 s turn stepped exactly once (a lost step
    reply is checked with a ping, never answered by a second step), and the scenario still passes. 100 ms
    time-outs: a reply takes a few ms here."""
    scenario = cut(load_scenario(ROOT / "configs" / "scenarios" / "latchup.toml"), duration_s=3600.0,
                   keep=[LATCHUP_RECOVERED, CHIP_INTACT],
                   rates_hz={"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1, "thermal.telemetry": 0.0,
                             "sim.clock": 0.0, "sim.links": 0.1})
    steps_at: list[int] = []
    run = ScenarioRun(scenario, board_cmd=f"{stub_bin} --fd {{fd}} --baud 921600 --timeout-ms 100 -v",
                      record_dir=tmp_path, line_options="ber=1e-4&ber_seed=3&pace=0")
    run.emu.message_hooks.append(lambda t_ns, plane, direction, msg: steps_at.append(t_ns) if (
        plane == "board" and direction == "in" and msg.topic == "board.step") else None)
    async with asyncio.timeout(220):
        result = await run.run()
    assert result.board_log is not None
    log = result.board_log.read_text(errors="replace")
    assert result.error is None, f"{result.error}\nthe stub's log:\n{log[-4000:]}"
    assert len(re.findall(r"^--- start ", log, flags=re.MULTILINE)) == 1, log[-4000:]
    failed = [f"{v.label}: {v.reason}" for v in result.verdicts if not v.passed]
    assert not failed, f"{failed}\nthe stub's log:\n{log[-4000:]}"
    assert result.t_end_s == 3600.0
    # in step: the emulator carried out one board.step per 10 s turn, in order (a repeat with the same seq only
    # when the first copy never arrived, so it shows once here too)
    turns = [k * 10 * NS_PER_S for k in range(360)]
    assert steps_at[:360] == turns, [t / NS_PER_S for t in steps_at][:60]
    assert steps_at[360:] in ([], [3600 * NS_PER_S])
    summary = read_summary(result.board_log)
    stats: Any = run.emu.board_link.stats
    # the line really was bad both ways, and the stub got through it by repeats, pings and resyncs
    assert stats.bad_frames >= 20 and summary["bad_frames"] >= 20, (stats, summary)
    assert summary["decode_errors"] == stats.decode_errors == 0
    assert summary["timeouts"] >= 20 and summary["retries"] >= 1 and summary["lost"] >= 1, summary
    assert summary["unacked_steps"] + summary["missed_waits"] >= 1, summary


@pytest.mark.timeout(120)
def test_flatsat_test_restarts_the_stub_on_the_same_pty(stub_bin: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``flatsat test --board '... --fd {fd}'``: the command line end to end, with a board_restart. The runner
    kills the stub mid-run and starts a new one on the same pty master; it says hello again and steps on."""
    sc = tmp_path / "reboot.toml"
    sc.write_text(
        '[scenario]\nname = "stub-reboot"\nconfig = "suncatcher-proto.toml"\nduration = "15m"\nseed = 3\n'
        '[overrides]\n"telemetry.rates_hz" = { "eps.telemetry" = 0.1, "accel.status" = 0.1, "adcs.sun" = 0.1, '
        '"thermal.telemetry" = 0.0, "sim.clock" = 0.0 }\n'
        '[[timeline]]\nat = "5m"\ndo = "board_restart"\ndown = "1m"\n'
        '[[requirement]]\nkind = "count"\ntopic = "board.hello"\nop = "=="\nvalue = 2\n'
        '[[requirement]]\nkind = "count"\ntopic = "board.step"\nop = ">="\nvalue = 80\n')
    from emulator.cli import main

    code = main(["test", str(sc), "--board", f"{stub_bin} --fd {{fd}} --baud 921600 -v",
                 "--record", str(tmp_path / "rec"), "--quiet"])
    log = (tmp_path / "rec" / "stub-reboot.board.log").read_text(errors="replace")
    assert code == 0, f"{capsys.readouterr()}\n{log[-3000:]}"
    starts = re.findall(r"^--- start (\d+): .*--fd (\d+) ", log, flags=re.MULTILINE)
    assert [n for n, _ in starts] == ["1", "2"] and starts[0][1] == starts[1][1], log[-3000:]
    assert read_summary(tmp_path / "rec" / "stub-reboot.board.log")["decode_errors"] == 0


class NoisyLine:
    """Two ptys joined by a relay that damages chosen frames (one bit flipped), frame-aware and deterministic.

    ``emulator_fd`` and ``stub_fd`` are pty masters; the relay reads whole frames from one and writes them to the
    other. From the emulator it damages every 6th ``sim.waiting``, every 10th ``reply`` and every 13th other
    frame; from the stub every 12th frame. A single-bit error is always caught by the CRC (docs/protocol.md 5);
    the bit is chosen so the byte never becomes 0x00 (a new delimiter would split the frame in two).
    """

    def __init__(self, emulator_fd: int, stub_fd: int) -> None:
        self.fds = {emulator_fd: stub_fd, stub_fd: emulator_fd}
        self.emulator_fd = emulator_fd
        self.buf = {emulator_fd: bytearray(), stub_fd: bytearray()}
        self.seen: dict[str, int] = {"sim.waiting": 0, "reply": 0, "other": 0, "stub": 0}
        self.damaged: dict[str, int] = {"sim.waiting": 0, "reply": 0, "other": 0, "stub": 0}
        self.frozen = False  #: stop damaging (the frames still in flight then arrive intact)
        loop = asyncio.get_running_loop()
        for fd in self.fds:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._pump, fd)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self.fds:
            loop.remove_reader(fd)

    def _which(self, src: int, frame: bytes) -> tuple[str, int]:
        if src != self.emulator_fd:
            return "stub", 12
        topic = decode_message(FrameDecoder().feed(frame)[0]).topic
        if topic == "sim.waiting":
            return "sim.waiting", 6
        return ("reply", 10) if topic == "reply" else ("other", 13)

    def _pump(self, src: int) -> None:
        try:
            data = os.read(src, 65536)
        except (BlockingIOError, OSError):
            return
        buf = self.buf[src]
        buf += data
        while (end := buf.find(0)) >= 0:
            frame = bytearray(buf[: end + 1])
            del buf[: end + 1]
            if len(frame) > 1:
                kind, every = self._which(src, bytes(frame))
                self.seen[kind] += 1
                if self.seen[kind] % every == 0 and not self.frozen:
                    i = len(frame) // 2
                    frame[i] ^= 0x10 if frame[i] != 0x10 else 0x01
                    self.damaged[kind] += 1
            out = memoryview(bytes(frame))
            while out:
                try:
                    out = out[os.write(self.fds[src], out):]
                except BlockingIOError:
                    select_writable(self.fds[src])


def select_writable(fd: int) -> None:
    select.select([], [fd], [], 1.0)


@pytest.mark.slow
async def test_stub_recovers_from_damaged_frames_on_a_noisy_line(stub_bin: Path, tmp_path: Path) -> None:
    """Lost requests, replies and sim.waiting: the stub times out, steps again, pings, and the run goes on.

    The stub opens its end by path here (a pty slave, as it would a /dev/ttyUSB0), through a relay that damages
    one frame in a few; 150 turns must complete and every damaged frame must be dropped and counted.
    """
    turns = 150
    emu_master, emu_slave = os.openpty()
    stub_master, stub_slave = os.openpty()
    for fd in (emu_slave, stub_slave):
        tty.setraw(fd)
    rates = {"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1, "thermal.telemetry": 0.0, "sim.clock": 0.0, "sim.links": 0.1}
    cfg = load_config(CONFIG, overrides={"links.board": f"serial://{os.ttyname(emu_slave)}?baud=921600",
                                         "links.control": None, "sim.mode": "lockstep",
                                         "sim.lockstep_source": "board", "telemetry.truth_rate_hz": 0.0,
                                         "telemetry.rates_hz": rates})
    emu = WatchedEmulator.from_config(cfg, record_path=None)
    line = None
    proc = None
    log_path = tmp_path / "c-stub.log"
    try:
        await emu.start()
        line = NoisyLine(emu_master, stub_master)
        with log_path.open("wb") as err:
            # --queue 0: no jobs, so a turn is its step alone and a lost frame costs one 100 ms time-out
            proc = await asyncio.create_subprocess_exec(
                str(stub_bin), "--baud", "921600", "--timeout-ms", "100", "--queue", "0", "-v",
                os.ttyname(stub_slave), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        run = StubRun(emu, proc, log_path)
        async with asyncio.timeout(WALL_LIMIT_S):
            await emu.hello.wait()
        await run.run_for(turns * 10.0)
        # Settle before counting: with no more damage, wait for two pings of the now idle stub. It sends the
        # second only after reading the first one's reply, so by then it has read every frame sent before it.
        line.frozen = True
        pings: asyncio.Queue[Request] = asyncio.Queue()
        emu.watchers.append(lambda r: pings.put_nowait(r) if r.topic == "ping" else None)
        async with asyncio.timeout(WALL_LIMIT_S):
            await pings.get()
            await pings.get()
        summary = await run.stop()
    finally:
        if proc is not None:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        if line is not None:
            line.close()
        await emu.aclose()
        for fd in (emu_master, emu_slave, stub_master, stub_slave):
            os.close(fd)

    assert emu.clock.now_ns() == round(turns * 10.0 * NS_PER_S)
    assert line is not None
    damaged = line.damaged
    assert damaged["sim.waiting"] >= 10 and damaged["reply"] >= 10 and damaged["stub"] >= 10 and damaged["other"]
    # every damaged frame was dropped and counted, on both sides
    assert summary["bad_frames"] == damaged["sim.waiting"] + damaged["reply"] + damaged["other"]
    assert emu.board_link.stats.bad_frames == damaged["stub"]
    assert summary["decode_errors"] == emu.board_link.stats.decode_errors == 0
    # a lost sim.waiting is recovered by a ping that finds the clock waiting (unless a repeated board.step, after a
    # lost reply, had already moved the clock on); each lost request or reply costs a time-out (at least: on a
    # loaded machine a slow reply may time out too, which costs time, not correctness)
    assert summary["missed_waits"] >= 1
    assert summary["timeouts"] >= damaged["stub"] + damaged["reply"]
    # a lost board.step reply makes the stub step again: time still moves only by its acknowledged steps
    steps = [r for r in emu.requests if r.topic == "board.step" and r.ok]
    assert emu.clock.status()["limit_ns"] == round(sum(r.payload["duration_s"] for r in steps) * NS_PER_S)


@pytest.mark.timeout(180)
async def test_the_same_scenario_and_seed_over_serial_record_byte_identical_files(stub_bin: Path,
                                                                                   tmp_path: Path) -> None:
    """Two runs over a paced pty at the default 1 Hz telemetry: each 10 s step queues more telemetry than the
    line's ``hwm``, so which frames are superseded depends on wall-clock pacing. Those counts live in the
    wall-time side file (``sim.links``); the recording itself is the same, byte for byte."""
    sc = tmp_path / "det.toml"
    sc.write_text('[scenario]\nname = "det"\nconfig = "suncatcher-proto.toml"\nduration = "8m"\nseed = 5\n'
                  '[[requirement]]\nkind = "count"\ntopic = "board.step"\nop = ">="\nvalue = 40\n')
    scenario = load_scenario(sc)
    recordings = []
    for run in ("a", "b"):
        async with asyncio.timeout(120):
            result = await run_scenario(scenario, board_cmd=f"{stub_bin} --fd {{fd}} --baud 921600", seed=None,
                                        record_dir=tmp_path / run)
        assert result.error is None and result.passed, result.error
        assert result.recording is not None
        recordings.append(result.recording)
    side = [r.with_suffix(".wall") for r in recordings]
    assert all(p.is_file() for p in side), "sim.links goes to the side file"
    assert recordings[0].read_bytes() == recordings[1].read_bytes()
    from emulator.recorder import read_recording

    topics = {rec.message.topic for rec in read_recording(recordings[0])}
    assert "sim.links" not in topics and "eps.telemetry" in topics
    links = [rec.message.payload for rec in read_recording(side[0])]
    assert links and {rec.message.topic for rec in read_recording(side[0])} == {"sim.links"}
    # the case that made recordings differ: telemetry superseded on the line, a wall-clock matter
    assert links[-1]["board"]["drops"].get("superseded", 0) > 0, links[-1]["board"]


# -- results checked on the board, and a noisy line ----------------------------------------------------------------
SCENARIOS = ROOT / "configs" / "scenarios"
SDC_DETECTED = "every SDC in a result is detected within 2 min"
SEFI_RESET = "every hang (SEFI) is reset within 1 min"
STORM_HAD_SDCS = "the storm did produce SDCs (the scenario can fail)"
LATCHUP_RECOVERED = "the accelerator is powered again within 2 min of the trip"
CHIP_INTACT = "the chip is never damaged"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_stub_rejects_the_corrupted_result_of_the_radiation_storm(stub_bin: Path, tmp_path: Path) -> None:
    """configs/scenarios/saa-radiation-storm.toml to 1h05m (past its SDC at 40m15s and its hang at 1h): the stub
    recomputes the digest of every result (fsb_jobcheck.c), sends its verdict, rejects the corrupted one and runs
    that job again; the hang is reset. The full 3 h, and the work it requires, run with the QEMU board
    (test_qemu_board.py) and the reference board (tests/hil)."""
    scenario = cut(load_scenario(SCENARIOS / "saa-radiation-storm.toml"), duration_s=3900.0,
                   keep=[SDC_DETECTED, SEFI_RESET, STORM_HAD_SDCS], rates_hz=one_sample_per_turn(10.0))
    async with asyncio.timeout(240):
        result = await run_scenario(scenario, board_cmd=f"{stub_bin} --fd {{fd}} --baud 921600 -v",
                                    record_dir=tmp_path)
    assert result.board_log is not None
    log = result.board_log.read_text(errors="replace")
    assert result.error is None, f"{result.error}\n{log[-3000:]}"
    failed = [f"{v.label}: {v.reason}" for v in result.verdicts if not v.passed]
    assert not failed, f"{failed}\n{log[-3000:]}"
    summary = read_summary(result.board_log)
    assert summary["sdc_detected"] >= 1
    # every finished result was recomputed and reported, none judged wrongly (no false alarm: the emulator counts)
    assert summary["jobs_checked"] == summary["jobs_done"] > 100
    assert summary["verdicts_dropped"] == 0 and summary["verdicts"] >= summary["jobs_checked"] - 3
    assert result.recording is not None
    verdicts = [r.message.payload for r in read_recording(result.recording)
                if r.direction == "in" and r.message.topic == "accel.job.verdict"]
    assert result.series.get("satellite.accelerator.verdicts.false_alarm")[-1] == 0
    rejected = [v["id"] for v in verdicts if not v["ok"]]
    assert len(rejected) == summary["sdc_detected"]
    # the rejected job ran again: same kind and seed, submitted after its verdict
    done = {r.message.payload["id"]: r.message.payload for r in read_recording(result.recording)
            if r.direction == "out" and r.message.topic == "accel.job.done"}
    resubmitted = [r.message.payload["seed"] for r in read_recording(result.recording)
                   if r.direction == "in" and r.message.topic == "accel.job.submit"]
    for job_id in rejected:
        assert resubmitted.count(done[job_id]["seed"]) == 2


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_stub_stays_in_step_and_passes_on_a_line_with_ber_1e_4_both_ways(stub_bin: Path, tmp_path: Path) -> None:
    """Bit errors at 1e-4 in both directions (tests/transports: a relay between two ptys flips bits at random), the
    emulator on one end through ``serial://`` (a board URL, as for a real board), the stub on the other by path.

    About one frame in twelve is damaged (one in three telemetry frames of ~600 bytes). The stub sends a lost
    request that is safe to repeat again with the same id after --timeout-ms (doubling), asks the clock whether a
    board.step whose reply was lost ran (instead of stepping twice), pings when a sim.waiting goes missing, and
    never needs to start over (link_lost_ms):
    latchup.toml up to 50 min (the trip at 30 min and the recovery) passes as on a clean line, the stub takes a
    turn in (nearly) every one of the 300 periods, and it is still running at the end.
    """
    modem = NullModem(tmp_path)
    modem.noise = bit_flipper(1e-4, seed=13)
    scenario = cut(load_scenario(SCENARIOS / "latchup.toml"), duration_s=3000.0, keep=[LATCHUP_RECOVERED, CHIP_INTACT],
                   rates_hz=one_sample_per_turn(10.0))
    run = ScenarioRun(scenario, board_url=f"serial://{modem.a.link}?baud=921600&pace=1", record_dir=tmp_path)
    log_path = tmp_path / "c-stub.log"
    proc = None
    try:
        with log_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                str(stub_bin), "--baud", "921600", "--timeout-ms", "100", "-v", str(modem.b.link),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        async with asyncio.timeout(330):
            result = await run.run()
        alive = proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await proc.wait()
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        modem.close()
    log = log_path.read_text(errors="replace")
    assert alive, f"the stub exited on the noisy line:\n{log[-3000:]}"
    assert result.error is None, f"{result.error}\n{log[-3000:]}"
    failed = [f"{v.label}: {v.reason}" for v in result.verdicts if not v.passed]
    assert not failed, f"{failed}\n{log[-3000:]}"
    assert result.t_end_s == 3000.0
    summary = read_summary(log_path)
    # damage both ways, counted on both sides, and recovered from by repeats, step checks and pings
    assert summary["bad_frames"] > 20 and run.emu.board_link.stats.bad_frames > 5, summary
    assert summary["timeouts"] > 5 and summary["retries"] > 0 and summary["missed_waits"] > 0, summary
    # in step all along: it never lost the emulator, took its turn in the periods (a lost step reply is told
    # from a lost step by the clock),
    # every turn's step counted (by its reply, or by the clock when the reply was lost: unacked_steps) but maybe
    # the last (the run ends when it lands, and its reply may not), and it saw the clock to its last period
    assert summary["restarts"] == 0, log[-3000:]
    steps = summary["steps"] + summary["unacked_steps"]
    assert summary["turns"] >= 300 - 2 and summary["turns"] - 1 <= steps <= summary["turns"], summary
    assert summary["t_s"] >= 3000 - 10
