"""Crash-safe recording of every message on both planes, and reading it back.

File layout: a msgpack stream. The first object is a header map
``{"flatsat_recording": 1, "protocol_version": 1, "meta": {...}}``; every following object is
``[plane, direction, envelope]`` where plane is ``"board"`` or ``"control"``, direction is
``"out"`` (emulator -> peers) or ``"in"`` (peers -> emulator) and envelope is the exact
msgpack bytes of the message. Appends are buffered and flushed to the OS at least once per
wall-clock second, so a killed emulator leaves a readable file missing at most the last
second; :func:`read_recording` reads up to a truncated last record and says so.

Nothing that depends on the wall clock goes into that file, so ``afap`` and ``lockstep`` runs give
byte-identical files on every medium: messages whose topic is marked ``wall_time`` (``sim.links``: drops
that depend on pacing, lags; ``board.link``: round trips) go to a side file of the same format beside it,
``NAME.wall`` for ``NAME.rec`` (:func:`wall_path`), created when the first such message comes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgpack

from emulator.errors import CodecError, ConfigError
from emulator.protocol.codec import decode_message
from emulator.protocol.envelope import PROTOCOL_VERSION, Message

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FLUSH_INTERVAL_NS = 1_000_000_000


@dataclass(frozen=True)
class Record:
    plane: str
    direction: str
    message: Message
    raw: bytes
    #: where the record starts in the file and how many bytes it takes (for :func:`read_record_at`)
    offset: int = -1
    size: int = 0


def wall_path(path: str | Path) -> Path:
    """The wall-time side file of a recording: ``run.rec`` -> ``run.wall`` (not ``*.rec``: globs of recordings
    do not pick it up)."""
    return Path(path).with_suffix(".wall")


class Recorder:
    """Writes a recording; ``max_bytes``: stop writing once the file holds that much (``capped`` says when)."""

    def __init__(self, path: str | Path, meta: dict[str, Any] | None = None, max_bytes: int | None = None,
                 now_ns: Callable[[], int] | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._now_ns = now_ns or (lambda: 0)
        #: sim time (ns) of the first message the cap kept out; None while not capped
        self.capped_at_ns: int | None = None
        #: messages the cap kept out of the file
        self.dropped = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._meta = meta or {}
        self.bytes = 0
        self._packer = msgpack.Packer(use_bin_type=True)
        self._fh: IO[bytes] | None = self._open(self.path, {})
        self._wall_fh: IO[bytes] | None = None
        self._closed = False
        self._last_flush_ns: int | None = None
        self.records = 0
        self.wall_records = 0

    def _open(self, path: Path, extra: dict[str, Any]) -> IO[bytes]:
        fh = open(path, "wb", buffering=1 << 16)  # noqa: SIM115 (closed in close())
        header = self._packer.pack({"flatsat_recording": FORMAT_VERSION, "protocol_version": PROTOCOL_VERSION,
                                    "meta": {**self._meta, **extra}})
        fh.write(header)
        fh.flush()
        if path == self.path:
            self.bytes = len(header)
        return fh

    def write(self, plane: str, direction: str, envelope: bytes, *, wall_time: bool = False) -> None:
        """Append one message; ``wall_time``: its content depends on the wall clock (side file)."""
        if self._closed:
            return
        if wall_time:
            if self._wall_fh is None:
                self._wall_fh = self._open(wall_path(self.path), {"wall_time": True, "recording": self.path.name})
            self._wall_fh.write(self._packer.pack((plane, direction, envelope)))
            self.wall_records += 1
            return
        assert self._fh is not None
        packed = self._packer.pack((plane, direction, envelope))
        if self.max_bytes is not None and self.bytes + len(packed) > self.max_bytes:
            if self.capped_at_ns is None:
                self.capped_at_ns = self._now_ns()
            self.dropped += 1
            return
        self._fh.write(packed)
        self.bytes += len(packed)
        self.records += 1

    def maybe_flush(self, wall_ns: int) -> None:
        if self._last_flush_ns is None or wall_ns - self._last_flush_ns >= FLUSH_INTERVAL_NS:
            self.flush()
            self._last_flush_ns = wall_ns

    def flush(self) -> None:
        for fh in (self._fh, self._wall_fh):
            if fh is not None:
                fh.flush()

    def close(self) -> None:
        self._closed = True
        for fh in (self._fh, self._wall_fh):
            if fh is not None:
                fh.flush()
                fh.close()
        self._fh = self._wall_fh = None


#: what to give instead of a file that is not a recording
RECORDING_HINT = "give the .rec file that `flatsat run --record` or `flatsat test` wrote"


def read_header(path: str | Path) -> dict[str, Any]:
    """The recording's header. Raises ConfigError naming the file and why it is not one (msgpack's own words, e.g.
    "No more data to unpack.", mean nothing to a user)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below; the open's own errors are the user's to read)
    except OSError as exc:
        what = "is a directory" if isinstance(exc, IsADirectoryError) else exc.strerror or str(exc)
        raise ConfigError(f"{path}: cannot read the recording: {what} ({RECORDING_HINT})", field="recording") from None
    with fh:
        if not fh.read(1):
            raise ConfigError(f"{path}: the file is empty (0 bytes), not a flatsat recording; {RECORDING_HINT}",
                              field="recording")
        fh.seek(0)
        unpacker = msgpack.Unpacker(fh, raw=False, max_buffer_size=64 << 20)
        try:
            header = next(unpacker)
        except (StopIteration, ValueError, msgpack.UnpackException):
            header = None
        if header is None:
            fh.seek(0)
            start = fh.read(64)
            if msgpack.packb("flatsat_recording") in start:  # a header's first key, and the file ends within it
                size = Path(path).stat().st_size
                raise ConfigError(f"{path}: a flatsat recording cut off inside its header ({size} bytes): nothing "
                                  "was recorded in it (the copy is incomplete, or the run stopped as it began); "
                                  f"{RECORDING_HINT}", field="recording")
    if not isinstance(header, dict) or header.get("flatsat_recording") != FORMAT_VERSION:
        raise ConfigError(f"{path}: not a flatsat recording (it does not begin with a recording's header); "
                          f"{RECORDING_HINT}", field="recording")
    return header


def read_recording(path: str | Path) -> Iterator[Record]:
    """Records in file order. A damaged or cut-off tail (a crash mid-write) ends the reading, and records whose
    envelope cannot be decoded are skipped: what was not read is logged as a warning once the file is done
    (never silently), everything before it is delivered."""
    read_header(path)
    size = Path(path).stat().st_size
    skipped = 0
    with open(path, "rb") as fh:
        unpacker = msgpack.Unpacker(fh, raw=False, max_buffer_size=64 << 20)
        next(unpacker)
        offset = unpacker.tell()
        try:
            while True:
                offset = unpacker.tell()
                try:
                    item = next(unpacker)
                except StopIteration:
                    break
                except (ValueError, msgpack.UnpackException):
                    log.warning("%s: a damaged record at byte %d ends the recording: the %d bytes from there were "
                                "not read", path, offset, size - offset)
                    return
                if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], bytes)):
                    log.warning("%s: byte %d holds no record ([plane, direction, envelope]): the %d bytes from "
                                "there were not read", path, offset, size - offset)
                    return
                try:
                    msg = decode_message(item[2])
                except CodecError:
                    skipped += 1
                    continue
                yield Record(plane=item[0], direction=item[1], message=msg, raw=item[2], offset=offset,
                             size=unpacker.tell() - offset)
            if offset < size:  # the stream ended inside a record: the run stopped mid-write
                log.warning("%s: the last %d bytes are a cut-off record (the run stopped mid-write, a crash?): "
                            "not read; everything before them was", path, size - offset)
        finally:
            if skipped:
                log.warning("%s: %d record%s held an envelope that could not be decoded: skipped", path, skipped,
                            "" if skipped == 1 else "s")


def read_record_at(fh: IO[bytes], offset: int, size: int) -> Record:
    """The record that :func:`read_recording` gave with this ``offset`` and ``size``, from an open file (random
    access for playback with a time slider)."""
    fh.seek(offset)
    item = msgpack.unpackb(fh.read(size), raw=False)
    if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], bytes)):
        raise CodecError(f"no record at offset {offset}", field="offset")
    return Record(plane=item[0], direction=item[1], message=decode_message(item[2]), raw=item[2], offset=offset,
                  size=size)
