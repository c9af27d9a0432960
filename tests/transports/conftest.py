"""Transport test fixtures: leak checks, short temp dirs for ipc, and a pty null modem with unplug/replug."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import tty
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from emulator.transports import open_links
from emulator.transports.loop import loop_channels


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Every test must close what it opened: links, loop channels and flatsat tasks."""
    yield
    leaked = open_links()
    channels = loop_channels()
    tasks = [t.get_name() for t in asyncio.all_tasks()
             if t is not asyncio.current_task() and t.get_name().startswith("flatsat") and not t.done()]
    for link in leaked:
        await link.aclose()
    assert not leaked, f"links left open: {leaked}"
    assert not channels, f"loop channels left registered: {channels}"
    assert not tasks, f"flatsat tasks left running: {tasks}"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory (ipc socket paths are limited to ~107 bytes; pytest's tmp_path is long)."""
    path = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class _End:
    """One end of the null modem: a pty whose slave is reached through a stable symlink."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave = -1
        self.pending = bytearray()  # bytes waiting to be written into this end's master

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw from the start: a fresh pty echoes, and an echo would bounce frames back to their sender.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        # The relay keeps the slave open too, so the master never sees a hang-up between openers.
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(os.ttyname(self.slave))

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1
        self.pending.clear()


class NullModem:
    """Two ptys joined by an in-process relay: ``a.link`` and ``b.link`` behave like two UARTs wired together.

    ``unplug(end)`` closes that pty and removes its path (a USB unplug: the opener gets EIO / hang-up);
    ``plug(end)`` makes a new pty at the same path (re-enumeration), as /dev/serial/by-id does.
    ``inject(end, data)`` puts bytes on the wire towards whoever opened ``end``.
    """

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.get_running_loop()
        self.a = _End(directory / "ttyA")
        self.b = _End(directory / "ttyB")
        #: line noise: applied to every chunk the relay carries (e.g. random bit flips at a given BER)
        self.noise: Callable[[bytes], bytes] | None = None
        for end in (self.a, self.b):
            self.plug(end)

    def other(self, end: _End) -> _End:
        return self.b if end is self.a else self.a

    def plug(self, end: _End) -> None:
        end.plug()
        self.loop.add_reader(end.master, self._relay, end)

    def unplug(self, end: _End) -> None:
        if end.master >= 0:
            self.loop.remove_reader(end.master)
            self.loop.remove_writer(end.master)
        end.unplug()

    def inject(self, end: _End, data: bytes) -> None:
        self._write(end, data)

    def _relay(self, src: _End) -> None:
        try:
            data = os.read(src.master, 65536)
        except OSError:
            return
        dst = self.other(src)
        if self.noise is not None:
            data = self.noise(data)
        if dst.master >= 0:  # an unplugged far end: the bytes fall on the floor, as on a real cable
            self._write(dst, data)

    def _write(self, dst: _End, data: bytes) -> None:
        dst.pending += data
        self._drain(dst)

    def _drain(self, dst: _End) -> None:
        if dst.master < 0:
            return
        while dst.pending:
            try:
                n = os.write(dst.master, dst.pending)
            except BlockingIOError:
                n = 0
            if n == 0:
                self.loop.add_writer(dst.master, self._drain, dst)
                return
            del dst.pending[:n]
        self.loop.remove_writer(dst.master)

    def close(self) -> None:
        for end in (self.a, self.b):
            self.unplug(end)


@pytest.fixture
async def null_modem(short_tmp: Path) -> AsyncIterator[NullModem]:
    modem = NullModem(short_tmp)
    yield modem
    modem.close()


@pytest.fixture
def make_null_modem() -> type[NullModem]:
    """The NullModem class, for fixtures that must build it inside their own event loop."""
    return NullModem
