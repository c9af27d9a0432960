"""`flatsat console` without a browser: the server, its WebSocket feed and guards, live and recording sources.

A lockstep emulator moves only when the page steps it, so every check here waits on sim time, not wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="pip install 'flatsat[console]'")
import aiohttp

from emulator.config import load_config
from emulator.console.server import ConsoleServer
from emulator.console.sources import FEED_HZ, LiveSource, RecordingSource
from emulator.console.state import ConsoleState
from emulator.runtime import Emulator

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "suncatcher-proto.toml"
NS = 1_000_000_000
WALL_GUARD_S = 20.0


@contextlib.asynccontextmanager
async def live_console(**server_kw: Any) -> AsyncIterator[tuple[Emulator, ConsoleServer, str]]:
    cfg = load_config(CONFIG, {"sim.mode": "lockstep", "links.board": None, "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg, record_path=None) as emu:
        run = asyncio.create_task(emu.run(None))
        source = LiveSource(emu.control_url, ConsoleState())
        await source.start()
        server = ConsoleServer(source, **server_kw)
        url = await server.start("127.0.0.1", 0)
        try:
            yield emu, server, url
        finally:
            await server.aclose()
            await source.aclose()
            emu.request_stop("test done")
            await run


class Page:
    """A WebSocket client that reads frames as the page does."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.last: dict[str, dict[str, Any]] = {}
        self.seq = 0

    async def until(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda f: True) -> dict[str, Any]:
        async with asyncio.timeout(WALL_GUARD_S):
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                frame = json.loads(msg.data)
                self.last[frame["type"]] = frame
                if frame["type"] == kind and pred(frame):
                    return frame

    async def command(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        seq = self.seq
        await self.ws.send_json({"op": "command", "id": seq, "topic": topic, "payload": payload})
        return await self.until("reply", lambda f: f["id"] == seq)


@contextlib.asynccontextmanager
async def page_at(url: str, **kw: Any) -> AsyncIterator[Page]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws", **kw) as ws:
        yield Page(ws)


def rail(view: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in view["rails"] if r["name"] == name)


async def test_the_page_sees_the_satellite_and_steps_its_clock() -> None:
    async with live_console() as (emu, _server, url), page_at(url) as page:
        meta = await page.until("meta", lambda f: bool(f["fault_schemas"]))
        assert meta["mode"] == "live" and meta["connected"] and meta["source"] == emu.control_url
        view = await page.until("view", lambda f: f["clock"].get("mode") == "lockstep" and bool(f["rails"]))
        assert {r["name"] for r in view["rails"]} == set(emu.truth()["satellite"]["power"]["rails"])
        assert view["battery"]["soc"] == pytest.approx(emu.model.power.soc, rel=1e-6)
        t0 = view["t_ns"]
        reply = await page.command("clock.step", {"duration_s": 600.0})
        assert reply["ok"], reply
        later = await page.until("view", lambda f: f["t_ns"] >= t0 + 600 * NS)
        assert later["utc"] > view["utc"] and later["clock"]["steps"] >= 600
        # the orbit ahead comes from orbit.predict; the next eclipse lies ahead of now
        orbit = (await page.until("view", lambda f: f["orbit"]["next_eclipse"] is not None))["orbit"]
        assert orbit["next_eclipse"]["entry_in_s"] > 0 and orbit["beta_deg"] is not None
        # a plot of any telemetry field, decimated, with the eclipses to shade; it fills as the run goes on (the
        # console's feed carries each topic at most FEED_HZ times a wall second: at that speed, every 1 Hz sample)
        reply = await page.command("clock.set_mode", {"mode": "scaled", "speed": FEED_HZ})
        assert reply["ok"], reply
        await page.ws.send_json({"op": "plots", "plots": [{"id": "a", "fields": ["satellite.power.soc",
                                                                                 "eps.telemetry.bus_v"],
                                                           "window_s": 3600}]})
        series = await page.until("series", lambda f: all(len(s["x"]) > 40 for s in f["plots"]["a"]["series"]))
        soc = series["plots"]["a"]["series"][0]
        assert soc["field"] == "satellite.power.soc" and len(soc["x"]) <= 1200
        assert soc["y"][-1] == pytest.approx(emu.model.power.soc, abs=1e-3)
        wanted = {"satellite.power.bus_v", "sim.clock.lag_s", "accel.status.utilisation", "eps.telemetry.rails.3.current_a"}
        meta = page.last["meta"]  # sent again only when the field list grows
        assert wanted <= set(meta["fields"]) or wanted <= set((await page.until("meta"))["fields"])


async def test_the_console_is_fed_and_an_emulator_that_cannot_feed_is_subscribed_to() -> None:
    async with live_console() as (emu, _server, url), page_at(url) as page:
        await page.until("view", lambda f: bool(f["rails"]))
        feeds = emu.control_link.feeds
        assert len(feeds) == 1 and next(iter(feeds.values())).interval_ns == round(NS / FEED_HZ)
        assert page.last["meta"]["feed"] == {"max_hz": FEED_HZ, "error": None}
    cfg = load_config(CONFIG, {"sim.mode": "lockstep", "links.board": None, "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg, record_path=None) as emu:
        emu.control_link.supports_feeds = False  # as a medium without per-peer sends would be
        run = asyncio.create_task(emu.run(None))
        source = LiveSource(emu.control_url, ConsoleState())
        await source.start()
        try:
            async with asyncio.timeout(WALL_GUARD_S):
                while source.feed_error is None:
                    await asyncio.sleep(0.05)
                assert "cannot send a feed to one peer" in source.feed_error and not source.feeding
                await source.request("clock.step", {"duration_s": 30.0})
                while source.state.latest.get("eps.telemetry", (0, {}))[0] < 30 * NS:  # subscribed: it streams
                    await asyncio.sleep(0.05)
            assert source.meta()["feed"] == {"max_hz": None, "error": source.feed_error}
        finally:
            await source.aclose()
            emu.request_stop("test done")
            await run


async def test_a_rail_switched_from_the_page_is_what_the_board_would_command() -> None:
    async with live_console() as (emu, _server, url), page_at(url) as page:
        await page.until("view", lambda f: bool(f["rails"]))
        reply = await page.command("board.command", {"topic": "eps.rail.set", "payload": {"rail": "payload",
                                                                                          "on": False}})
        assert reply["ok"] and reply["data"] == {"topic": "eps.rail.set",
                                                 "data": {"rail": "payload", "commanded_on": False, "on": False}}
        assert emu.truth()["satellite"]["power"]["rails"]["payload"]["on"] is False
        await page.command("clock.step", {"duration_s": 2.0})
        view = await page.until("view", lambda f: rail(f, "payload")["on"] is False and f["t_ns"] >= 2 * NS)
        assert rail(view, "payload")["commanded_on"] is False
        # refusals as the emulator words them, with the field named
        bad = await page.command("board.command", {"topic": "eps.rail.set", "payload": {"rail": "paylod",
                                                                                        "on": True}})
        assert bad["ok"] is False and bad["error"]["field"] == "payload.payload.rail"
        assert "unknown rail 'paylod' (did you mean 'payload'?)" in bad["error"]["message"]
        heater = await page.command("board.command", {"topic": "thermal.heater.set",
                                                      "payload": {"heater": "battery_heater", "mode": "on"}})
        assert heater["ok"] and emu.truth()["satellite"]["thermal"]["heaters"]["battery_heater"]["mode"] == "on"


async def test_faults_from_their_schemas_with_a_duration_are_listed_and_cleared() -> None:
    async with live_console() as (emu, _server, url), page_at(url) as page:
        meta = await page.until("meta", lambda f: bool(f["fault_schemas"]))
        short = next(f for f in meta["fault_schemas"] if f["name"] == "eps.rail.short")
        assert short["clearable"] and set(short["params"]["required"]) == {"rail", "extra_a"}
        reply = await page.command("fault.inject", {"name": "eps.rail.short", "params": {"rail": "comms_5v",
                                                                                         "extra_a": 0.5},
                                                    "duration_s": 300.0})
        assert reply["ok"], reply
        fid = reply["data"]["fault_id"]
        await page.command("clock.step", {"duration_s": 1.0})
        view = await page.until("view", lambda f: any(x["fault_id"] == fid for x in f["faults"]))
        active = next(x for x in view["faults"] if x["fault_id"] == fid)
        assert active["name"] == "eps.rail.short" and active["params"] == {"rail": "comms_5v", "extra_a": 0.5}
        # truth.get (polled) adds the expiry of the duration
        view = await page.until("view", lambda f: any(x["fault_id"] == fid and x["until_ns"] > 0 for x in f["faults"]))
        assert next(x for x in view["faults"] if x["fault_id"] == fid)["until_ns"] == 300 * NS
        cleared = await page.command("fault.clear", {"fault_id": fid})
        assert cleared["ok"] and emu.truth()["faults"] == []
        await page.command("clock.step", {"duration_s": 1.0})
        await page.until("view", lambda f: not f["faults"])
        bad = await page.command("fault.inject", {"name": "eps.rail.short", "params": {"rail": "comms_5v"}})
        assert bad["ok"] is False and bad["error"]["field"] == "payload.params.extra_a"


async def test_the_page_cannot_stop_the_run_and_bad_frames_are_answered() -> None:
    async with live_console() as (emu, _server, url), page_at(url) as page:
        reply = await page.command("sim.stop", {})
        assert reply["ok"] is False and "does not send 'sim.stop'" in reply["error"]["message"]
        assert not emu.stopped
        await page.ws.send_str("not json")
        err = await page.until("error")
        assert "bad frame" in err["message"]


async def test_token_host_and_origin_guards() -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies for 127.0.0.1, as a browser does
    async with live_console(token="s3cret") as (_emu, _server, url), aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(url) as r:
            assert r.status == 401 and "token" in await r.text()
        async with http.get(url + "?token=wrong") as r:
            assert r.status == 401
        async with http.get(url + "?token=s3cret") as r:
            assert r.status == 200 and "flatsat console" in await r.text()
        async with http.get(url + "vendor/plotly.min.js") as r:  # the cookie carries the token from here on
            assert r.status == 200 and len(await r.read()) > 1_000_000
        async with http.get(url + "vendor/topojson/world_110m.json") as r:
            assert r.status == 200 and "coastlines" in (await r.json())["objects"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            async with http.ws_connect(url + "ws", headers={"Origin": "http://evil.example"}):
                pass
        assert exc.value.status == 403
        async with http.get(url, headers={"Host": "evil.example:8800"}) as r:
            assert r.status == 403  # DNS rebinding onto a loopback console


async def test_a_recording_is_played_back_at_any_instant(tmp_path: Path) -> None:
    slow = {t: 0.1 for t in ("eps.telemetry", "thermal.telemetry", "adcs.sun", "accel.status", "sim.clock", "sim.links")}
    cfg = load_config(CONFIG, {"sim.mode": "afap", "telemetry.rates_hz": slow, "telemetry.truth_rate_hz": 0.2})
    rec = tmp_path / "run.rec"
    async with Emulator.from_config(cfg, board_url=None, control_url=None, record_path=str(rec)) as emu:
        await emu.run_for(1800)
        emu.control("board.command", {"topic": "eps.rail.set", "payload": {"rail": "payload", "on": False}})
        emu.control("fault.inject", {"name": "radiation.scale", "params": {"factor": 5.0}})
        await emu.run_for(5400)
    source = RecordingSource(rec, ConsoleState())
    source.load()
    await source.start()
    try:
        assert source.t0_ns == 0 and source.t1_ns == 7200 * NS and source.commands == 0
        source.seek(900 * NS)
        early = source.view()
        source.seek(3600 * NS)
        late = source.view()
        assert rail(early, "payload")["on"] is True and rail(late, "payload")["on"] is False
        assert early["faults"] == [] and [f["name"] for f in late["faults"]] == ["radiation.scale"]
        assert early["utc"] == "2026-06-21T00:15:00Z" and late["playback"]["cursor_ns"] == 3600 * NS
        assert (rec.with_suffix(".wall")).is_file() and "boards" in late["links"]  # sim.links: the side file
        assert late["boards"] == []  # no board said hello in this run
        assert [a["name"] for a in late["bus"]["arrays"]] == ["wings"]
        # the eclipse around the cursor is known from the recording itself
        assert late["orbit"]["next_eclipse"] is not None or late["orbit"]["eclipse_now"] is not None
        # and the period, between the ascending nodes on the recorded track (`flatsat orbit`: 97.85 min)
        assert early["orbit"]["period_s"] == pytest.approx(97.85 * 60, abs=3)
        x = source.series(["satellite.power.soc"], 3600.0)["series"][0]["x"]
        assert len(x) > 50 and x[0] >= source.state.unix_ms(0) and x[-1] <= source.state.unix_ms(3600 * NS)
        assert source.map_data()["now"] is not None
        reply = await source.request("clock.pause", {})
        assert reply["ok"] is False and "recording" in reply["error"]["message"]
        source.seek(-5)
        assert source.cursor_ns == 0
    finally:
        await source.aclose()


def test_the_command_line_says_what_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    from emulator.console.app import run

    args = argparse.Namespace(url=None, recording=None, listen="127.0.0.1:0", token=None, nice=0)
    assert run(args) == 2
    neither = capsys.readouterr().err
    assert "CONTROL_URL" in neither and "--recording FILE" in neither and "not both" not in neither
    args = argparse.Namespace(url="zmq+tcp://127.0.0.1:5560", recording="x.rec", listen="127.0.0.1:0", token=None,
                              nice=0)
    assert run(args) == 2
    assert "not both" in capsys.readouterr().err
    args = argparse.Namespace(url="zmq+tcp://127.0.0.1:5560", recording=None, listen="nonsense", token=None, nice=0)
    assert run(args) == 2
    assert "--listen" in capsys.readouterr().err
    args = argparse.Namespace(url=None, recording="/nonexistent.rec", listen="127.0.0.1:0", token=None, nice=0)
    assert run(args) == 2
    assert "/nonexistent.rec" in capsys.readouterr().err


def test_an_empty_or_foreign_file_is_named_and_said_to_be_no_recording(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from emulator.console.app import run

    empty, foreign, cut = tmp_path / "empty.rec", tmp_path / "notes.txt", tmp_path / "cut.rec"
    empty.write_bytes(b"")
    foreign.write_text("hello, not a recording\n")
    cut.write_bytes(b"\x83")  # the start of a msgpack map, then nothing
    said = {}
    for path in (empty, foreign, cut):
        args = argparse.Namespace(url=None, recording=str(path), listen="127.0.0.1:0", token=None, nice=0)
        assert run(args) == 2
        said[path] = capsys.readouterr().err
    assert f"{empty}: the file is empty (0 bytes), not a flatsat recording" in said[empty]
    for path in (foreign, cut):
        assert f"{path}: not a flatsat recording (it does not begin with a recording's header)" in said[path]
    assert not any("No more data" in text for text in said.values())


def test_a_busy_port_is_said_before_the_recording_is_read(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from emulator.console.app import run

    rec = tmp_path / "big.rec"
    rec.write_bytes(b"\x00" * 1000)  # were it read first, its error would come first
    with socket.create_server(("127.0.0.1", 0)) as busy:
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        args = argparse.Namespace(url=None, recording=str(rec), listen=listen, token=None, nice=0)
        assert run(args) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on {listen}" in err and "reading" not in err and "recording" not in err


async def test_a_page_that_comes_while_the_recording_is_read_is_told_to_wait(tmp_path: Path) -> None:
    server = ConsoleServer(RecordingSource(tmp_path / "run.rec", ConsoleState()), loading="still reading run.rec")
    url = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "api/view") as r:
                assert r.status == 503 and "still reading run.rec" in await r.text()
            server.loading = None
            async with http.get(url) as r:
                assert r.status == 200
    finally:
        await server.aclose()


def test_a_non_loopback_address_always_needs_a_token() -> None:
    from emulator.console.app import access

    assert access("127.0.0.1", None) == (None, True) and access("::1", "t") == ("t", True)
    token, loopback = access("0.0.0.0", None)
    assert not loopback and token is not None and len(token) >= 20
    assert access("192.0.2.7", "given") == ("given", False)
    assert access("0.0.0.0", None)[0] != token  # made up anew, never a fixed default


def test_the_printed_urls_can_be_opened_and_the_warning_fits_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from emulator.console import app

    live = argparse.Namespace(url="zmq+tcp://127.0.0.1:5560", recording=None)
    playback = argparse.Namespace(url=None, recording="run.rec")
    monkeypatch.setattr(app, "machine_names", lambda family: ["bench7", "192.0.2.7"])
    text = app.announcement(live, "0.0.0.0", 18812, "tok", False, "idle")
    opened = [line.split()[-1] for line in text.splitlines() if "http://" in line]
    # a wildcard address is never shown as one to open: the machine's name and address, then loopback
    assert opened == ["http://bench7:18812/?token=tok", "http://192.0.2.7:18812/?token=tok",
                      "http://127.0.0.1:18812/?token=tok"]
    assert "0.0.0.0:" not in text and "steer the emulator" in text
    text = app.announcement(playback, "0.0.0.0", 18812, "tok", False, "idle")
    assert "can watch the recording" in text and "steer" not in text
    assert app.page_urls("::", 8800, None)[-1] == "http://[::1]:8800/"
    monkeypatch.setattr(app, "machine_names", lambda family: [])  # nothing known about this machine
    assert app.page_urls("0.0.0.0", 8800, "t") == ["http://<this machine's address>:8800/?token=t",
                                                   "http://127.0.0.1:8800/?token=t"]
    assert app.page_urls("127.0.0.1", 8800, None) == ["http://127.0.0.1:8800/"]
    monkeypatch.undo()
    for name in app.machine_names(socket.AF_INET):  # whatever this machine has: never loopback or a wildcard
        assert not name.startswith(("127.", "0.0.0.0")) and name != "localhost"


def test_the_console_lowers_its_priority_as_told() -> None:
    from emulator.console.app import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["u"]).nice == "idle" and p.parse_args(["u", "--nice", "7"]).nice == 7
    for bad in ("-1", "20", "low"):
        with pytest.raises(SystemExit):
            p.parse_args(["u", "--nice", bad])
    # in a child: a process cannot take its priority back
    probe = ("import os; from emulator.console.app import lower_priority; n0 = os.nice(0); got = lower_priority({}); "
             "print(got, os.sched_getscheduler(0) == os.SCHED_IDLE if got == 'idle' else os.nice(0) - n0)")
    out = subprocess.run([sys.executable, "-c", probe.format("'idle'")], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out in (["idle", "True"], ["nice", "19", "19"])
    assert subprocess.run([sys.executable, "-c", probe.format(5)], capture_output=True, text=True,
                          check=True).stdout.split() == ["nice", "5", "5"]
