"""A bench power supply on a TCP socket on loopback, for the closed-loop tests: the Keysight E36300 dialect over a
raw SCPI socket (what ``TCPIP::127.0.0.1::<port>::SOCKET`` reaches through pyvisa-py), with a load on each channel.

The load is a resistor plus a current that follows a script (seconds since the output went on -> extra amps), and
the supply is an ideal CV/CC source: at the set voltage while the load wants less than the current limit, else at the
limit with the voltage sagging to what the load then takes. Its over-voltage protection switches the output off.
Every line is recorded with its ``time.monotonic_ns()`` arrival time, and every output change with its time, so a test
can say when the output really went off. Several clients may connect (the emulator, then its guard).
"""

from __future__ import annotations

import re
import socketserver
import threading
import time
from dataclasses import dataclass, field

IDN = "Keysight Technologies,E36312A,MY00000001,1.0.4-1.0.3-1.00"
_NUM = r"([+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
MAX_V, MAX_A = 25.0, 1.0 * 10


@dataclass
class Channel:
    v_set: float = 0.0
    i_set: float = 0.1
    on: bool = False
    ovp_v: float = 33.0
    on_since_ns: int = 0
    load_ohm: float = float("inf")
    #: (seconds after output on, extra amps) steps, sorted by time
    script: list[tuple[float, float]] = field(default_factory=list)

    def extra_a(self, now_ns: int) -> float:
        t = (now_ns - self.on_since_ns) / 1e9
        a = 0.0
        for t0, amps in self.script:
            if t >= t0:
                a = amps
        return a

    def output(self, now_ns: int) -> tuple[float, float]:
        if not self.on:
            return 0.0, 0.0
        extra = self.extra_a(now_ns)
        want = self.v_set / self.load_ohm + extra
        if want <= self.i_set:
            return self.v_set, want
        # constant current: the resistor gets what the script leaves
        v = max(0.0, (self.i_set - extra) * self.load_ohm) if self.load_ohm != float("inf") else 0.0
        return min(v, self.v_set), self.i_set


class ScpiSupplySim:
    """The instrument. Start with :meth:`start`, reach it at :attr:`resource`, stop with :meth:`stop`."""

    def __init__(self, channels: int = 3, idn: str = IDN) -> None:
        self.idn = idn
        self.ch = {n: Channel() for n in range(1, channels + 1)}
        self.lines: list[tuple[int, str]] = []
        self.output_log: list[tuple[int, int, bool]] = []   # (monotonic ns, channel, on)
        self.errors: list[str] = []
        self.lock = threading.RLock()
        self.connections = 0
        self.refuse = False
        self.max_v, self.max_a = MAX_V, MAX_A
        self._server: socketserver.ThreadingTCPServer | None = None
        self._clients: set = set()

    # -- control from the test -------------------------------------------------------------------------------
    def start(self) -> ScpiSupplySim:
        sim = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                if sim.refuse:
                    return
                with sim.lock:
                    sim.connections += 1
                    sim._clients.add(self.request)
                try:
                    for raw in self.rfile:
                        reply = sim.handle(raw.decode(errors="replace").strip())
                        if reply is not None:
                            self.wfile.write((reply + "\n").encode())
                            self.wfile.flush()
                except OSError:
                    pass
                finally:
                    with sim.lock:
                        sim._clients.discard(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="scpi-supply-sim", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.drop_connections()
            self._server = None

    def drop_connections(self) -> None:
        """Close every client's socket (a cable pulled, the instrument rebooted)."""
        import socket

        with self.lock:
            for sock in list(self._clients):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._clients.clear()

    def offs_after(self, t_ns: int, ch: int = 1) -> list[int]:
        with self.lock:
            return [t for t, c, on in self.output_log if c == ch and not on and t >= t_ns]

    def sent(self, prefix: str = "") -> list[str]:
        with self.lock:
            return [line for _, line in self.lines if line.startswith(prefix)]

    # -- the instrument ----------------------------------------------------------------------------------------
    def _set_output(self, n: int, on: bool) -> None:
        c = self.ch[n]
        now = time.monotonic_ns()
        if on and not c.on:
            c.on_since_ns = now
        if on != c.on:
            self.output_log.append((now, n, on))
        c.on = on
        if c.on and c.v_set > c.ovp_v:   # over-voltage protection
            self._set_output(n, False)

    def _chan(self, text: str) -> int | None:
        m = re.fullmatch(r"\(@(\d)\)", text.strip())
        if not m or int(m.group(1)) not in self.ch:
            self.errors.append('-221,"Settings conflict; channel"')
            return None
        return int(m.group(1))

    def handle(self, line: str) -> str | None:
        now = time.monotonic_ns()
        with self.lock:
            self.lines.append((now, line))
            u = line.upper()
            if u == "*IDN?":
                return self.idn
            if u == "*CLS":
                self.errors.clear()
                return None
            if u == "*OPC?":
                return "1"
            if u in ("SYST:ERR?", "SYSTEM:ERROR?"):
                return self.errors.pop(0) if self.errors else '+0,"No error"'
            m = re.fullmatch(r"(VOLT|CURR|VOLT:PROT) " + _NUM + r",(.*)", u)
            if m:
                n = self._chan(m.group(3))
                if n is None:
                    return None
                value = float(m.group(2))
                limit = (self.max_v * 1.1 if m.group(1) == "VOLT:PROT" else self.max_v if m.group(1) == "VOLT"
                         else self.max_a)
                if not 0 <= value <= limit:
                    self.errors.append('-222,"Data out of range"')
                    return None
                c = self.ch[n]
                if m.group(1) == "VOLT":
                    c.v_set = value
                    if c.on and c.v_set > c.ovp_v:
                        self._set_output(n, False)
                elif m.group(1) == "CURR":
                    c.i_set = value
                else:
                    c.ovp_v = value
                    if c.on and c.v_set > c.ovp_v:
                        self._set_output(n, False)
                return None
            m = re.fullmatch(r"OUTP (ON|OFF|1|0),(.*)", u)
            if m:
                n = self._chan(m.group(2))
                if n is not None:
                    self._set_output(n, m.group(1) in ("ON", "1"))
                return None
            m = re.fullmatch(r"(VOLT|CURR|OUTP|VOLT:PROT|MEAS:VOLT|MEAS:CURR)\? (.*)", u)
            if m:
                n = self._chan(m.group(2))
                if n is None:
                    return "0"
                c = self.ch[n]
                v, a = c.output(now)
                return {"VOLT": f"{c.v_set:+.8E}", "CURR": f"{c.i_set:+.8E}", "OUTP": "1" if c.on else "0",
                        "VOLT:PROT": f"{c.ovp_v:+.8E}", "MEAS:VOLT": f"{v:+.8E}",
                        "MEAS:CURR": f"{a:+.8E}"}[m.group(1)]
            self.errors.append('-113,"Undefined header"')
            return None
