"""A board written only from docs/protocol.md: raw pyzmq + msgpack, nothing imported from flatsat.

The emulator runs as a separate process (``python -m emulator run``, lockstep stepped by the board). The
client below knows only what the documents say: the two ports of a zmq+tcp URL, the welcome message, the
envelope, ``board.hello`` and its reply, taking turns on ``sim.waiting``. It sends every board command and
checks every reply's ``data`` (and every telemetry payload it sees) against the tables of docs/protocol.md,
nested tables included: a field the docs do not list, a documented field missing, or a wrong type fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
WELCOME = b"\xc1flatsat-welcome"  # docs/protocol.md section 1.1, byte for byte
TIMEOUT_S = 20.0


# -- the documents, parsed ------------------------------------------------------------------------------------------
def _tables(section: str) -> list[tuple[str, list[dict[str, str]]]]:
    """(heading before it, rows) of every markdown table in a section of text."""
    out: list[tuple[str, list[dict[str, str]]]] = []
    lines = section.splitlines()
    i = 0
    heading = ""
    while i < len(lines):
        line = lines[i]
        if line.startswith("| field |"):
            head = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(head, cells, strict=False)))
                i += 1
            out.append((heading, rows))
            continue
        if line.strip():
            heading = line.strip()
        i += 1
    return out


def documented_topics() -> dict[str, dict[str, Any]]:
    """topic -> {"request": table, "reply": table or None, "nested": {path: table}} (a table: name -> row)."""
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- topics:begin -->", 1)[1].split("<!-- topics:end -->", 1)[0]
    out: dict[str, dict[str, Any]] = {}
    for part in re.split(r"^#### ", body, flags=re.MULTILINE)[1:]:
        topic = part.split("`", 2)[1]
        entry: dict[str, Any] = {"request": None, "reply": None, "nested": {}, "reply_nested": {}}
        in_reply = False
        for heading, rows in _tables(part):
            table = {r["field"].strip("`"): r for r in rows if r["field"] != "(none)"}
            if heading.startswith("Reply `data`"):
                in_reply = True
                entry["reply"] = table
            elif heading.startswith("`"):
                path = heading.split("`", 2)[1]
                entry["reply_nested" if in_reply else "nested"][path] = table
            else:
                entry["request"] = table
        out[topic] = entry
    return out


def _type_ok(value: Any, typ: str) -> bool:
    typ = typ.replace(" (optional)", "")
    alternatives = typ.split(" or ")
    for alt in alternatives:
        alt = alt.strip()
        if alt == "nil" and value is None:
            return True
        if alt == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if alt == "float" and isinstance(value, float):
            return True
        if alt == "str" and isinstance(value, str):
            return True
        if alt == "bool" and isinstance(value, bool):
            return True
        if alt == "any":
            return True
        if alt.startswith("map") and isinstance(value, dict):
            m = re.fullmatch(r"map of str to (.+)", alt)
            return m is None or all(isinstance(k, str) and _type_ok(v, m.group(1)) for k, v in value.items())
        if alt.startswith("array") and isinstance(value, list):
            m = re.fullmatch(r"array of (.+)", alt)
            return m is None or all(_type_ok(v, m.group(1)) for v in value)
    return False


def check_shape(where: str, value: Any, table: dict[str, dict[str, str]], nested: dict[str, Any],
                path: str = "") -> None:
    """``value`` (a map) has exactly the documented fields, of the documented types and choices."""
    assert isinstance(value, dict), f"{where}: {path or 'data'} is not a map: {value!r}"
    extra = set(value) - set(table)
    assert not extra, f"{where}: {path or 'data'} has fields the docs do not list: {sorted(extra)}"
    for name, row in table.items():
        optional = "(optional)" in row["type"]
        if name not in value:
            assert optional, f"{where}: documented field {path}{name} is missing"
            continue
        v = value[name]
        if v is None and optional:
            continue
        assert _type_ok(v, row["type"]), f"{where}: {path}{name} = {v!r} is not {row['type']}"
        choices = re.findall(r"`([^`]+)`", row["valid"])
        if choices and isinstance(v, str):
            assert v in choices, f"{where}: {path}{name} = {v!r} is not one of {choices}"
        sub = f"{path}{name}"
        if sub in nested and isinstance(v, dict):
            check_shape(where, v, nested[sub], nested, sub + ".")
        if f"{sub}[]" in nested and isinstance(v, list):
            for item in v:
                check_shape(where, item, nested[f"{sub}[]"], nested, f"{sub}[].")


# -- a board --------------------------------------------------------------------------------------------------------
class RawBoard:
    def __init__(self, url: str, docs: dict[str, dict[str, Any]]) -> None:
        m = re.fullmatch(r"zmq\+tcp://([^:/?]+):(\d+)\?cmd_port=(\d+)", url)
        assert m, f"the emulator printed {url!r}; the docs say a printed zmq+tcp URL spells out cmd_port"
        host, pub_port, cmd_port = m.group(1), int(m.group(2)), int(m.group(3))
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(f"tcp://{host}:{pub_port}")
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.connect(f"tcp://{host}:{cmd_port}")
        self.docs = docs
        self.seq = 0
        self.t_ns = 0
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.checked_topics: set[str] = set()

    def close(self) -> None:
        self.sub.close(0)
        self.dealer.close(0)
        self.ctx.term()

    def wait_welcome(self) -> None:
        assert self.sub.poll(TIMEOUT_S * 1000), "no welcome on the SUB socket"
        assert self.sub.recv() == WELCOME

    def _take(self, raw: bytes) -> None:
        assert not raw.startswith(b"\xc1") or raw == WELCOME
        if raw == WELCOME:
            return
        env = msgpack.unpackb(raw, raw=False)
        assert set(env) == {"v", "topic", "seq", "t_ns", "src", "payload"} and env["v"] == 1
        self.t_ns = max(self.t_ns, env["t_ns"])
        topic = env["topic"]
        self.seen.setdefault(topic, []).append(env["payload"])
        doc = self.docs.get(topic)
        if doc is not None and doc["request"] is not None and topic not in ("sim.links", "truth.sample"):
            check_shape(f"telemetry/event {topic}", env["payload"], doc["request"], doc["nested"])
            self.checked_topics.add(topic)

    def drain(self, timeout_s: float = 0.0) -> None:
        while self.sub.poll(timeout_s * 1000):
            self._take(self.sub.recv())
            timeout_s = 0.0

    def request(self, topic: str, payload: dict[str, Any], ok: bool = True) -> dict[str, Any]:
        self.seq += 1
        self.dealer.send(msgpack.packb({"v": 1, "topic": topic, "seq": self.seq, "t_ns": self.t_ns, "src": "raw",
                                        "payload": payload}, use_bin_type=True))
        assert self.dealer.poll(TIMEOUT_S * 1000), f"no reply to {topic}"
        env = msgpack.unpackb(self.dealer.recv(), raw=False)
        assert env["topic"] == "reply"
        reply_doc = self.docs["reply"]
        check_shape(f"reply to {topic}", env["payload"], reply_doc["request"], reply_doc["nested"])
        body = env["payload"]
        assert body["id"] == self.seq and body["re"] == topic
        assert body["ok"] is ok, f"{topic}: {body}"
        if not ok:
            return body["error"]
        doc = self.docs[topic]
        assert doc["reply"] is not None, f"docs give no reply table for {topic}"
        check_shape(f"reply to {topic}", body["data"], doc["reply"], doc["reply_nested"])
        return body["data"]

    def wait_for(self, pred: Any, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.drain(0.2)

    def turn(self, duration_s: float) -> None:
        """Step, then wait for the sim.waiting that ends the step (docs section 6)."""
        before = max((w["t_ns"] for w in self.seen.get("sim.waiting", [])), default=-1)
        self.request("board.step", {"duration_s": duration_s})
        self.wait_for(lambda: any(w["t_ns"] > before for w in self.seen.get("sim.waiting", [])), "sim.waiting")


def _start_emulator(config: str, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "run", "--config", str(ROOT / "configs" / config), "--mode", "lockstep",
         "--board-url", "zmq+tcp://127.0.0.1:0", "--control-url", "none", "--duration", "1d",
         "--lockstep-timeout", "60"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        m = re.search(r"board plane (zmq\+tcp://\S+)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("the emulator printed no board URL:\n" + "".join(lines))


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return documented_topics()


def _hello(board: RawBoard) -> dict[str, Any]:
    board.wait_welcome()
    hello = board.request("board.hello", {"name": "raw-docs-board", "version": "1"})
    assert hello["protocol_version"] == 1 and hello["mode"] == "lockstep" and hello["lockstep_source"] == "board"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", hello["epoch_utc"])
    return hello


@pytest.mark.slow
def test_a_board_from_the_docs_alone_model_mode(tmp_path: Path, docs: dict[str, dict[str, Any]]) -> None:
    # board.command is the operator's (control plane) way to run a board command, not the board's own
    board_cmds = {t for t, d in docs.items() if d["reply"] is not None and t.split(".")[0] in
                  ("board", "ping", "eps", "thermal", "accel")} - {"board.command"}
    proc, url = _start_emulator("suncatcher-proto.toml", tmp_path)
    board = RawBoard(url, docs)
    sent: set[str] = set()
    try:
        hello = _hello(board)
        assert hello["waiting"] is True  # we joined after the t = 0 sim.waiting: first turn now
        sent.add("board.hello")
        board.turn(30.0)  # the accelerator boots (20 s)
        board.request("ping", {})
        board.request("board.link", {"rtt_p50_ms": 1.0, "rtt_p99_ms": 2.0, "rtt_max_ms": 3.0, "requests": 10,
                                     "lag_s": 0.0})
        board.request("eps.rail.set", {"rail": "payload", "on": True})
        board.request("eps.rail.reset", {"rail": "payload"})
        board.request("eps.shed.set", {})
        board.request("thermal.heater.set", {"heater": "battery_heater", "mode": "auto"})
        for _ in range(10):  # until the board is up (accel.status, as a board would watch it)
            if board.seen.get("accel.status") and board.seen["accel.status"][-1]["state"] == "idle":
                break
            board.turn(10.0)
        board.request("accel.dvfs.set", {"level": "mid"})
        job = board.request("accel.job.submit", {"kind": "inference", "size": 5})
        for _ in range(20):
            if any(d["id"] == job["id"] for d in board.seen.get("accel.job.done", [])):
                break
            board.turn(10.0)
        done = [d for d in board.seen.get("accel.job.done", []) if d["id"] == job["id"]]
        assert done and done[0]["ok"], board.seen.get("accel.job.done")
        board.request("accel.job.verdict", {"id": job["id"], "ok": True})
        second = board.request("accel.job.submit", {"kind": "training", "size": 100000})
        board.request("accel.job.cancel", {"id": second["id"]})
        board.request("accel.reset", {})
        err = board.request("accel.report", {"power_w": 5.0, "utilisation": 0.5}, ok=False)
        assert err["field"] == "mode" and err["code"] == "command"
        # the docs' list of error.field values holds what the emulator sends
        assert board.request("eps.rail.set", {"rail": "paylod", "on": True}, ok=False)["field"] == "payload.rail"
        board.turn(5.0)
        sent |= {"ping", "board.link", "board.step", "eps.rail.set", "eps.rail.reset", "eps.shed.set",
                 "thermal.heater.set", "accel.dvfs.set", "accel.job.submit", "accel.job.verdict",
                 "accel.job.cancel", "accel.reset"}
        assert board_cmds - sent == {"accel.report"}  # its ok reply is checked in external mode below
        board.drain(0.5)
        for topic in ("eps.telemetry", "thermal.telemetry", "accel.status", "adcs.sun", "sim.clock", "sim.waiting",
                      "accel.job.done", "accel.state"):
            assert topic in board.checked_topics, f"never saw {topic}"
    finally:
        board.close()
        _stop(proc)


@pytest.mark.slow
def test_a_board_from_the_docs_alone_external_mode(tmp_path: Path, docs: dict[str, dict[str, Any]]) -> None:
    proc, url = _start_emulator("cubesat-6u-jetson-external.toml", tmp_path)
    board = RawBoard(url, docs)
    try:
        _hello(board)
        for _ in range(30):  # until the emulator has the board powered (accel.status), as a board would watch it
            board.turn(5.0)
            if board.seen.get("accel.status") and board.seen["accel.status"][-1]["state"] == "booting":
                break
        assert board.seen["accel.status"][-1]["clock_mhz"] == 0.0  # nothing reported yet
        state = board.request("accel.report", {"power_w": 8.0, "utilisation": 0.6, "clock_mhz": 900.0,
                                               "jobs_done": 3})
        assert state == {"state": "busy"}
        verdict = board.request("accel.job.verdict", {"id": 1, "ok": True})
        assert verdict["matched"] is False
        board.turn(2.0)
        status = board.seen["accel.status"][-1]
        assert (status["utilisation"], status["clock_mhz"], status["jobs_done"]) == (0.6, 900.0, 3)
    finally:
        board.close()
        _stop(proc)
