"""Serial links: ``serial://<device>``, ``serial+socket://``, ``serial+loop://``, ``serial+rfc2217://`` through pyserial,
and ``serial+fd://<n>``, a descriptor the process inherited.

Grammar and options::

    serial://<device>                 /dev/ttyUSB0 (write serial:///dev/ttyUSB0), COM3, a pty path
    serial+socket://<host>:<port>     pyserial socket:// (ser2net, TCP-to-serial bridges)
    serial+rfc2217://<host>:<port>    pyserial rfc2217:// (network serial ports)
    serial+loop://                    pyserial loop://: single-ended echo, recv() returns what was sent
    serial+fd://<n>                   an open descriptor (a pty master passed by a parent); used as it is

    | option    | type          | default | meaning                                                    |
    |-----------|---------------|---------|------------------------------------------------------------|
    | baud      | int >= 1      | 115200  | line rate, bit/s                                           |
    | parity    | N, E, O       | N       | parity bit                                                 |
    | stopbits  | 1, 1.5, 2     | 1       | stop bits                                                  |
    | bytesize  | int 5..8      | 8       | data bits                                                  |
    | rtscts    | bool          | 0       | RTS/CTS flow control                                       |
    | exclusive | bool          | 1       | lock the device against a second opener                    |
    | pace      | bool          | 0       | pace transmitted bytes at the line rate (ptys ignore baud) |
    | reopen_s  | number > 0    | 1       | retry period after the device went away                    |
    | hwm       | int >= 1      | 32      | telemetry frames queued; then the oldest goes; not events  |
    | ber       | number 0..0.5 | 0       | bit errors injected into both directions (testing)         |
    | ber_seed  | int >= 0      | 0       | seed of the injected bit errors                            |
    | name      | str           |         | label in logs                                              |

One duplex byte stream. Every message is ``encode_message`` then ``encode_frame`` (COBS + CRC-16 +
0x00); the receiver's :class:`FrameDecoder` drops and counts damaged frames (``stats.bad_frames``)
and resynchronises at the next delimiter. A frame that passes the CRC but holds a bad envelope is
refused with a reason: the server's ``recv`` yields ``Incoming(error=...)`` so the runtime can reply.

The server and the client are the same :class:`SerialPort` underneath; the peer id is always
``b"serial"``. A UART has no connection state, so the peer going away is invisible; the *device*
going away (USB unplug: a read/write error, EOF, a pty whose other end closed) sets
``stats.is_up = False``, drops what was queued (counted in ``dropped_tx``) and retries opening the
same path every ``reopen_s``. Meanwhile ``publish`` drops and counts, ``send``/``send_to`` raise
:class:`TransportBrokenError`, and ``recv`` just waits. On reopen ``is_up`` is True again and
``stats.reconnects`` counts it.

Link budget: ``budget_bytes_s = baud / bits_per_char`` (8N1: 10 bits per byte). With ``pace=1`` the
link itself releases bytes no faster than that, from absolute deadlines (so asyncio's ~1 ms wake-up
lateness does not lower the rate), for ptys and sockets that would otherwise move ~20 MB/s.
Replies and requests (``send_to``/``send``) go before queued telemetry and are never dropped for
budget; beyond ``hwm`` queued telemetry frames the oldest is dropped (and counted) for the newest.
Events (``publish(msg, event=True)``: ``sim.waiting``, ``accel.power``, ...) queue in order with
telemetry and are never dropped for budget: a lockstep step can publish more telemetry at once than ``hwm``, and the
``sim.waiting`` after it is what the board waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import serial
import serial.tools.list_ports

from emulator.errors import CodecError, TransportBrokenError, TransportUnavailableError
from emulator.protocol.codec import decode_message, encode_message
from emulator.protocol.envelope import Message
from emulator.protocol.framing import FrameDecoder, encode_frame
from emulator.transports.base import ClientLink, LinkStats, Mailbox, ServerLink, TransportFactory
from emulator.transports.noise import BitErrors
from emulator.transports.url import TransportURL

log = logging.getLogger("flatsat.transports.serial")

#: The peer id of the one thing at the other end of a serial line.
SERIAL_PEER = b"serial"

#: Bytes read per wake-up: a flood of tiny garbage frames costs at most ~1 ms of decoding before the
#: event loop runs the clock again (a real 921600-baud line brings 92 kB/s).
_READ_BYTES = 4096
#: Received messages (or bytes) held for recv() before the link stops reading (the kernel and then the
#: line push back, as flow control would); reading resumes below half of it.
_RX_MAX = 4096
_RX_MAX_BYTES = 8 * 1024 * 1024
#: Bytes of replies (server) or requests (client) queued for transmission (~11 s of a 921600-baud line);
#: beyond it a reply is dropped and counted (queue_full) and a request raises: a peer that never reads
#: cannot grow the queue.
_PRIO_MAX_BYTES = 1 << 20
#: Bad frames in a row (nothing good between) after which the link stops reading for _GARBAGE_PAUSE_S: a peer that
#: sends only garbage then fills the kernel's buffer and waits, instead of taking the CPU the clock needs (a real
#: line at 921600 baud brings ~184 bytes in a pause; the kernel keeps them).
_BAD_FRAMES_PER_PAUSE = 16
_GARBAGE_PAUSE_S = 0.005
#: Polling period for pyserial handles without a file descriptor (loop://, rfc2217://).
_POLL_S = 0.001
#: pyserial loop:// queues at most this many bytes; writing more with no reader would block.
_LOOP_BUFFER = 4096


def bits_per_char(url: TransportURL) -> float:
    """Bits on the wire per data byte: start + data + parity + stop (8N1: 10)."""
    return 1 + url.get("bytesize") + (0 if url.get("parity") == "N" else 1) + url.get("stopbits")


def _pyserial_url(url: TransportURL) -> str:
    if url.carrier is None:
        return url.location
    return f"{url.carrier}://{url.location}"


def _line_noise(url: TransportURL) -> tuple[BitErrors | None, BitErrors | None]:
    """(what this end sends, what it receives) damaged at the URL's ``ber``; (None, None) for a clean line."""
    ber: float = url.get("ber")
    if ber <= 0:
        return None, None
    seed = url.get("ber_seed")
    log.warning("%s: injecting bit errors at a rate of %g in both directions (ber_seed=%d)", url.label, ber, seed)
    return BitErrors(ber, f"{seed}:tx"), BitErrors(ber, f"{seed}:rx")


class SerialPort:
    """One open (or re-opening) pyserial handle: framing, queues, pacing, unplug recovery."""

    def __init__(self, url: TransportURL, stats: LinkStats, set_up: Callable[[bool], None]) -> None:
        self.url = url
        self.stats = stats
        self._set_up = set_up  #: the link's state setter (wakes wait_until_up)
        self.baud: int = url.get("baud")
        self.bits_per_char = bits_per_char(url)
        self.budget_bytes_s = self.baud / self.bits_per_char
        self.pace: bool = url.get("pace")
        self.hwm: int = url.get("hwm")
        self.reopen_s: float = url.get("reopen_s")
        self.rx: Mailbox[bytes] = Mailbox()
        self._loop = asyncio.get_running_loop()
        self._ser: Any = None
        self._fd: int | None = None
        self._decoder = FrameDecoder()
        self._framing_seen = (0, 0, 0, 0)  # the decoder's (bad_crc, bad_cobs, too_short, oversized) counted so far
        self._rx_bytes = 0
        self._prio: deque[memoryview] = deque()  # replies / requests: never dropped for budget
        self._prio_bytes = 0
        # published frames in publish order: telemetry (True: droppable, at most hwm queued) and events
        self._tele: deque[tuple[memoryview, bool]] = deque()
        self._tele_queued = 0  # droppable (telemetry) frames in _tele
        self._current: memoryview | None = None  # the frame being written
        self._writer_armed = False
        self._reader_armed = False
        self._bad_in_row = 0
        self.garbage_pauses = 0  #: times reading stopped after a run of bad frames
        self._paused = False  # reading stopped for _GARBAGE_PAUSE_S after a run of bad frames
        self._closed = False
        self._wake = asyncio.Event()
        self._writable: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reopen: asyncio.Task[None] | None = None
        #: injected line noise (the ``ber`` option): on frames as they are queued, and on bytes as they are read
        self.noise_tx, self.noise_rx = _line_noise(url)

    # -- opening -------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the device; raises serial.SerialException / OSError / ValueError."""
        url = self.url
        if url.carrier == "fd":
            self._open_fd(int(url.location))
            return
        loop_handler = url.carrier == "loop"
        ser = serial.serial_for_url(
            _pyserial_url(url), baudrate=self.baud, bytesize=url.get("bytesize"), parity=url.get("parity"),
            stopbits=url.get("stopbits"), rtscts=url.get("rtscts"), timeout=0,
            # pyserial's loop:// refuses every write when write_timeout=0; writes are sized to its free space
            write_timeout=None if loop_handler else 0,
            exclusive=url.get("exclusive") if url.carrier is None else None)
        fd: int | None = None
        if not loop_handler:
            with contextlib.suppress(AttributeError, NotImplementedError, OSError, ValueError):
                fd = ser.fileno()
        self._ser, self._fd = ser, fd
        self._decoder = FrameDecoder()
        self._framing_seen = (0, 0, 0, 0)
        if fd is not None:
            self._loop.add_reader(fd, self._on_readable)
            self._reader_armed = True
        else:
            self._tasks.append(self._loop.create_task(self._poll(ser), name=f"flatsat-serial-poll {url.label}"))
        self._set_up(True)

    def _open_fd(self, fd: int) -> None:
        """An inherited descriptor: no device to configure (the parent set the line up); reopening after a loss
        only arms it again, and it is closed with the link."""
        os.fstat(fd)  # OSError (EBADF) when nothing is open there
        os.set_blocking(fd, False)
        self._ser, self._fd = None, fd
        self._decoder = FrameDecoder()
        self._framing_seen = (0, 0, 0, 0)
        self._loop.add_reader(fd, self._on_readable)
        self._reader_armed = True
        self._set_up(True)

    def start(self) -> None:
        if self.pace:
            self._tasks.append(self._loop.create_task(self._paced_writer(), name=f"flatsat-serial-pace {self.url.label}"))

    # -- receiving -----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_BYTES)  # one read per wake-up: the loop stays responsive under a flood
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(OSError(errno.EIO, "end of file (the other end closed)"))
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if self.noise_rx is not None:
            data = self.noise_rx.apply(data)
        good = False
        for message in self._decoder.feed(data):
            self.rx.put(message)
            self._rx_bytes += len(message)
            good = True
        st = self._decoder.stats
        now = (st.bad_crc, st.bad_cobs, st.too_short, st.oversized)
        if now != self._framing_seen:
            bad = 0
            for reason, new, old in zip(("bad_crc", "bad_cobs", "too_short", "oversize"), now, self._framing_seen,
                                        strict=True):
                self.stats.drop(reason, new - old)
                bad += new - old
            self._framing_seen = now
            self._bad_in_row = bad if good else self._bad_in_row + bad
        elif good:
            self._bad_in_row = 0
        if self._reader_armed and self._fd is not None:
            if self._rx_full():
                self._loop.remove_reader(self._fd)
                self._reader_armed = False
            elif self._bad_in_row >= _BAD_FRAMES_PER_PAUSE:
                self._bad_in_row = 0
                self._loop.remove_reader(self._fd)
                self._reader_armed = False
                self._paused = True
                self.garbage_pauses += 1
                self._loop.call_later(_GARBAGE_PAUSE_S, self._end_pause)

    def _end_pause(self) -> None:
        self._paused = False
        if not self._reader_armed and not self._closed and self._fd is not None and self.stats.is_up \
                and not self._rx_full():
            self._loop.add_reader(self._fd, self._on_readable)
            self._reader_armed = True

    def _rx_full(self) -> bool:
        return len(self.rx) >= _RX_MAX or self._rx_bytes >= _RX_MAX_BYTES

    def take(self, data: bytes) -> None:
        """Called after recv() took a message: resume reading once the backlog halved."""
        self._rx_bytes -= len(data)
        if (not self._reader_armed and not self._paused and self._fd is not None and self.stats.is_up
                and len(self.rx) < _RX_MAX // 2
                and self._rx_bytes < _RX_MAX_BYTES // 2):
            self._loop.add_reader(self._fd, self._on_readable)
            self._reader_armed = True
            self._on_readable()

    async def _poll(self, ser: Any) -> None:
        """Read/write loop for handles without a file descriptor."""
        while self._ser is ser:
            try:
                waiting = ser.in_waiting
                if waiting and not self._rx_full():
                    self._feed(ser.read(min(waiting, _READ_BYTES)))
            except (serial.SerialException, OSError) as exc:
                self._lost(exc)
                return
            if not self.pace:
                self._flush()
            await asyncio.sleep(_POLL_S)  # polling is the only option without a file descriptor

    # -- sending -------------------------------------------------------------------------------
    def enqueue(self, frame: bytes, *, telemetry: bool, event: bool = False) -> bool:
        """Queue one frame: a request or reply (``telemetry=False``), else a published frame.

        Published frames keep their order. At ``hwm`` queued telemetry frames, the oldest queued telemetry
        frame makes room for the new one (counted in ``dropped_tx``): a board wants the newest samples, and in
        a lockstep burst the last of each topic. An event (``event=True``: ``sim.waiting``, ``accel.power``...)
        is never dropped for budget, as no later sample supersedes it. While the device is gone, published
        frames are dropped (False) and requests and replies raise.
        """
        if not self.stats.is_up:
            if telemetry:
                self.stats.drop("device_gone")
                return False
            raise TransportBrokenError(f"{self.url.label}: the device is gone; reopening every {self.reopen_s:g} s")
        if self.noise_tx is not None:
            frame = self.noise_tx.apply(frame)
        if telemetry:
            droppable = not event
            if droppable:
                if self._tele_queued >= self.hwm:
                    tele = self._tele
                    for k, (_, old_droppable) in enumerate(tele):
                        if old_droppable:
                            del tele[k]
                            break
                    self.stats.drop("superseded")
                else:
                    self._tele_queued += 1
            self._tele.append((memoryview(frame), droppable))
        else:
            if self._prio_bytes + len(frame) > _PRIO_MAX_BYTES:  # the line does not drain: the peer does not read
                self.stats.drop("queue_full")
                return False
            self._prio.append(memoryview(frame))
            self._prio_bytes += len(frame)
        self.stats.tx += 1
        if self.pace:
            self._wake.set()
        elif not self._writer_armed:
            self._flush()
        return True

    def _has_data(self) -> bool:
        return bool(self._current is not None or self._prio or self._tele)

    def _next_chunk(self) -> memoryview | None:
        if self._current is None:
            if self._prio:
                self._current = self._prio.popleft()
                self._prio_bytes -= len(self._current)
            elif self._tele:
                self._current, droppable = self._tele.popleft()
                self._tele_queued -= droppable
        return self._current

    def _write_some(self, data: memoryview) -> int:
        """Write what the device takes now; 0 if it is full. Device errors mark the link down."""
        try:
            if self._fd is not None:
                return os.write(self._fd, data)
            if self.url.carrier == "loop":
                room = _LOOP_BUFFER - self._ser.in_waiting
                if room <= 0:
                    return 0
                data = data[:room]
            return int(self._ser.write(data) or 0)
        except BlockingIOError:
            return 0
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)
            return 0

    def _write_upto(self, limit: int | None) -> tuple[int, bool]:
        """Write queued frames, at most ``limit`` bytes (None: no limit). Returns (bytes written, device full)."""
        written = 0
        while self.stats.is_up and (limit is None or written < limit):
            chunk = self._next_chunk()
            if chunk is None:
                return written, False
            if limit is not None and len(chunk) > limit - written:
                part = chunk[: limit - written]
            else:
                part = chunk
            n = self._write_some(part)
            written += n
            if n == len(chunk):
                self._current = None
            else:
                self._current = chunk[n:]
                if n < len(part):
                    return written, True
        return written, False

    def _flush(self) -> None:
        """Unpaced: write as much as the device takes; wait for writability for the rest."""
        _, full = self._write_upto(None)
        want = full and self.stats.is_up and self._fd is not None
        if want != self._writer_armed and self._fd is not None:
            if want:
                self._loop.add_writer(self._fd, self._on_writable)
            else:
                self._loop.remove_writer(self._fd)
            self._writer_armed = want

    def _on_writable(self) -> None:
        if self.pace:
            self._loop.remove_writer(self._fd)  # type: ignore[arg-type]
            self._writer_armed = False
            if self._writable is not None and not self._writable.done():
                self._writable.set_result(None)
        else:
            self._flush()

    async def _wait_writable(self) -> None:
        if self._fd is None:
            await asyncio.sleep(_POLL_S)
            return
        self._writable = self._loop.create_future()
        self._loop.add_writer(self._fd, self._on_writable)
        self._writer_armed = True
        try:
            await self._writable
        finally:
            self._writable = None
            if self._writer_armed and self._fd is not None:
                self._loop.remove_writer(self._fd)
                self._writer_armed = False

    async def _paced_writer(self) -> None:
        """Release bytes at budget_bytes_s, scheduled from absolute deadlines (like a UART shift register)."""
        # Pacing is the medium's own timing, not simulation time: it runs on the loop's monotonic clock.
        rate = self.budget_bytes_s
        step = max(1, int(rate * 0.002))  # wake about every 2 ms while busy
        burst = max(4 * step, int(rate * 0.02))  # after a stall, catch up at most 20 ms worth at once
        t0 = 0.0
        sent = 0
        idle = True
        while True:
            if not self._has_data() or not self.stats.is_up:
                idle = True
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self._loop.time()
            if idle:
                t0, sent, idle = now, 0, False
            due = int((now - t0) * rate) - sent
            if due > burst:  # held up (device full, loop busy): do not send the backlog as one burst
                t0 = now - (sent + burst) / rate
                due = burst
            if due <= 0:
                pending = len(self._current) if self._current is not None else 0
                for frame in self._prio:
                    if pending >= step:
                        break
                    pending += len(frame)
                for frame, _ in self._tele:
                    if pending >= step:
                        break
                    pending += len(frame)
                need = min(pending, step)
                await asyncio.sleep(max(0.0, t0 + (sent + need) / rate - now))
                continue
            written, full = self._write_upto(due)
            sent += written
            if full:
                await self._wait_writable()

    # -- device loss and reopening ---------------------------------------------------------------
    def _release_handle(self, *, final: bool = False) -> None:
        fd = self._fd
        if fd is not None:
            if self._reader_armed:
                self._loop.remove_reader(fd)
            if self._writer_armed:
                self._loop.remove_writer(fd)
        self._reader_armed = self._writer_armed = False
        ser, self._ser, self._fd = self._ser, None, None
        if ser is not None:
            with contextlib.suppress(Exception):  # the device may already be gone; nothing to report
                ser.close()
        if final and self.url.carrier == "fd":
            with contextlib.suppress(OSError):  # the link owns an inherited descriptor until it is closed
                os.close(int(self.url.location))

    def _lost(self, exc: BaseException) -> None:
        if self._closed or not self.stats.is_up:
            return
        log.warning("%s: device went away (%s); reopening every %g s", self.url.label, exc, self.reopen_s)
        self._set_up(False)
        self._release_handle()
        dropped = len(self._prio) + len(self._tele) + (self._current is not None)
        self.stats.drop("device_gone", dropped)
        self._prio.clear()
        self._prio_bytes = 0
        self._tele.clear()
        self._tele_queued = 0
        self._current = None
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._reopen is None or self._reopen.done():
            self._reopen = self._loop.create_task(self._reopen_loop(), name=f"flatsat-serial-reopen {self.url.label}")

    async def _reopen_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.reopen_s)  # the retry period of a vanished device
            if self._closed:
                return
            try:
                self.open()
            except (serial.SerialException, OSError, ValueError) as exc:
                log.debug("%s: reopen failed: %s", self.url.label, exc)
                continue
            self.stats.reconnects += 1
            log.info("%s: device is back", self.url.label)
            self._wake.set()
            return

    async def aclose(self, closed_error: BaseException) -> None:
        self._closed = True
        tasks = [t for t in (*self._tasks, self._reopen) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._release_handle(final=True)
        self.rx.fail(closed_error, discard=True)


def _open_port(url: TransportURL, stats: LinkStats, set_up: Callable[[bool], None]) -> SerialPort:
    port = SerialPort(url, stats, set_up)
    try:
        port.open()
    except (serial.SerialException, OSError, ValueError) as exc:
        ports = sorted(p.device for p in serial.tools.list_ports.comports())
        raise TransportUnavailableError(
            f"cannot open {_pyserial_url(url)!r} for {url}: {exc}; serial ports on this machine: "
            f"{', '.join(ports) or 'none'}", field="location", valid=ports) from exc
    port.start()
    return port


class SerialServerLink(ServerLink):
    """Emulator side of a serial line."""

    def __init__(self, url: TransportURL) -> None:
        super().__init__(url)
        self.port = _open_port(url, self.stats, self._set_up)
        self.budget_bytes_s = self.port.budget_bytes_s

    def _publish_bytes(self, data: bytes, event: bool) -> None:
        self.port.enqueue(encode_frame(data), telemetry=True, event=event)

    async def _send_to(self, peer: bytes, msg: Message) -> None:
        if peer != SERIAL_PEER:
            raise TransportBrokenError(f"{self.url.label} has one peer, {SERIAL_PEER!r}, not {peer!r}")
        self.port.enqueue(encode_frame(encode_message(msg)), telemetry=False)

    async def _recv_raw(self) -> tuple[bytes, bytes | None, CodecError | None]:
        data = await self.port.rx.get()
        self.port.take(data)
        return SERIAL_PEER, data, None

    async def _aclose(self) -> None:
        await self.port.aclose(self._closed_error())


class SerialClientLink(ClientLink):
    """Board side of a serial line (the same port underneath)."""

    def __init__(self, url: TransportURL) -> None:
        super().__init__(url)
        self.port = _open_port(url, self.stats, self._set_up)
        self.budget_bytes_s = self.port.budget_bytes_s

    async def _send(self, msg: Message) -> None:
        if not self.port.enqueue(encode_frame(encode_message(msg)), telemetry=False):
            raise TransportBrokenError(f"{self.url.label}: {_PRIO_MAX_BYTES} bytes of requests wait for the line; "
                                       "the other end does not read")

    async def _recv(self) -> Message:
        while True:
            data = await self.port.rx.get()
            self.port.take(data)
            try:
                msg = decode_message(data)
            except CodecError:
                self.stats.drop("decode_error")
                continue
            self.stats.rx += 1
            return msg

    async def _aclose(self) -> None:
        await self.port.aclose(self._closed_error())


class SerialTransport(TransportFactory):
    """Registry entry for ``serial://`` and ``serial+<pyserial handler>://``."""

    REQUIRES = "pyserial"

    @classmethod
    async def listen(cls, url: TransportURL) -> SerialServerLink:
        return SerialServerLink(url)

    @classmethod
    async def connect(cls, url: TransportURL) -> SerialClientLink:
        return SerialClientLink(url)


__all__: list[str] = ["SERIAL_PEER", "SerialClientLink", "SerialPort", "SerialServerLink", "SerialTransport",
                      "bits_per_char"]
