"""`flatsat console` in a real browser: headless Chromium (Debian's chromium + chromedriver) driven by Selenium.

A `flatsat run` and a `flatsat console` run as separate processes, as on a bench. The page must show values that
change, switch a rail off (the emulator's truth shows it off), inject a fault through the form generated from
its schema (truth and page show it active), and scrub the run's recording with the time slider; the browser's
console must stay free of errors. Screenshots of the main views go to out/console/.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "console"
INSTALL = "apt-get install -y chromium chromium-driver"
WAIT_S = 30.0  # wall-clock safety net for a loaded 2-core machine; every wait ends as soon as its condition holds
NS = 1_000_000_000


def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None)
        if os.environ.get("CI"):
            pytest.fail(f"{missing} missing in CI: .ci/run should have run: {INSTALL}")
        pytest.skip(f"{missing} not installed; install with: {INSTALL}")
    return chromium, driver


pytest.importorskip("selenium", reason="pip install -e '.[test]'")
pytest.importorskip("aiohttp", reason="pip install -e '.[test]'")
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select


def wait(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 - the page is still building; retry until the deadline
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def start(args: list[str], log: Path, pattern: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m emulator ARGS`` with stderr to ``log``; wait for a line matching ``pattern``."""
    fh = open(log, "wb")  # noqa: SIM115 - the process owns it until it exits
    proc = subprocess.Popen([sys.executable, "-m", "emulator", *args], stdout=fh, stderr=subprocess.STDOUT,
                            cwd=ROOT)
    fh.close()

    def found() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"{args[0]} exited {proc.returncode}: {log.read_text()}")
        m = re.search(pattern, log.read_text(errors="replace"))
        return m.group(1) if m else None

    try:
        return proc, wait(f"{args[0]} to start", found)
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def control(url: str, topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """One control-plane request from outside the console: the emulator's own answer (its truth)."""
    from emulator.protocol.envelope import Message
    from emulator.transports import connect

    async def ask() -> dict[str, Any]:
        async with await connect(url) as link:
            await link.send(Message(topic, payload or {}, seq=1, src="test"))
            async with asyncio.timeout(WAIT_S):
                while True:
                    msg = await link.recv()
                    if msg.topic == "reply" and msg.payload.get("id") == 1:
                        assert msg.payload["ok"], msg.payload
                        return msg.payload.get("data") or {}

    return asyncio.run(ask())


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, driver_path = _browser_or_skip()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                "--window-size=1500,2300"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield drv
    finally:
        drv.quit()


def console_errors(drv: Any) -> list[dict[str, Any]]:
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]


def text(drv: Any, css: str) -> str:
    return drv.find_element(By.CSS_SELECTOR, css).text


def shoot(drv: Any, name: str) -> Path:
    height = drv.execute_script("return document.documentElement.scrollHeight")
    drv.set_window_size(1500, max(900, min(int(height) + 40, 4000)))
    path = SHOTS / name
    drv.save_screenshot(str(path))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    _browser_or_skip()
    d = tmp_path_factory.mktemp("console-run")
    rec = d / "run.rec"
    # telemetry every 5 s of sim time keeps the fast-forward's recording small (quick to load for the slider)
    rates = ", ".join(f'"{t}" = 0.2' for t in ("eps.telemetry", "thermal.telemetry", "adcs.sun", "accel.status",
                                                "sim.clock", "sim.links"))
    # a board plane that listens, with no board: the page must not call that a board link
    emu, control_url = start(["run", "--mode", "scaled", "--speed", "30", "--duration", "6h",
                              "--board-url", "zmq+tcp://127.0.0.1:0",
                              "--control-url", "zmq+tcp://127.0.0.1:0", "--record", str(rec),
                              "--set", f"telemetry.rates_hz={{{rates}}}", "--set", "telemetry.truth_rate_hz=0.2"],
                             d / "emulator.log", r"control plane (zmq\+tcp://\S+)")
    # --nice 0: the suite keeps both CPUs busy, and the console's default (idle priority) would wait for them
    con, page = start(["console", control_url, "--listen", "127.0.0.1:0", "--nice", "0"], d / "console.log",
                      r"open (http://\S+)")
    procs = {"emu": emu, "console": con}
    try:
        yield {"control": control_url, "page": page, "rec": rec, "dir": d, "emu": emu, "procs": procs}
    finally:
        for proc in procs.values():
            stop(proc)


def test_live_page_shows_changing_values_switches_a_rail_and_injects_a_fault(browser: Any, run: dict[str, Any]) -> None:
    drv = browser
    drv.get(run["page"])
    first = wait("sim time on the page", lambda: text(drv, "#sim-utc") not in ("", "–") and text(drv, "#sim-utc"))
    wait("sim time to move", lambda: text(drv, "#sim-utc") != first)
    assert text(drv, "#link-state") == "page linked"
    assert "state of charge" in text(drv, "#power") and "%" in text(drv, "#power")
    assert re.search(r"array wings\s+\S+ W · strings alive 100 %", text(drv, "#power")), text(drv, "#power")
    wait("a plot with points", lambda: int(drv.find_element(By.CSS_SELECTOR, ".plot").get_attribute("data-points")
                                            or 0) > 3)
    wait("the ground track map", lambda: drv.find_elements(By.CSS_SELECTOR, "#map .geo"))
    assert "next eclipse entry" in text(drv, "#orbit")

    # the steering bar shows the run's own settings (scaled x30), so "Set mode" as shown changes nothing
    wait("the steering bar at the run's mode", lambda: drv.find_element(By.ID, "mode").get_attribute("value")
         == "scaled" and float(drv.find_element(By.ID, "speed").get_attribute("value")) == 30)
    # an empty box is refused by the page itself, naming the field; nothing is sent
    drv.find_element(By.ID, "step-s").clear()
    drv.find_element(By.ID, "btn-step").click()
    refused = wait("the page's refusal", lambda: drv.find_elements(By.CSS_SELECTOR, '#cmd-log li[data-ok="0"]'))[0]
    assert refused.text.startswith("✘ step: enter a number of seconds") and "nothing was sent" in refused.text
    drv.find_element(By.CSS_SELECTOR, "#cmd-log").click()  # leave the box
    # the heater controls are reachable at a 1280 px window: a mode set from the page is the emulator's
    drv.set_window_size(1280, 2300)
    wait("the heater rows", lambda: drv.find_elements(By.CSS_SELECTOR, 'select[data-heater-mode="battery_heater"]'))

    def set_heater(mode: str) -> None:
        Select(drv.find_element(By.CSS_SELECTOR, 'select[data-heater-mode="battery_heater"]')).select_by_visible_text(
            mode)
        drv.find_element(By.CSS_SELECTOR, 'button[data-heater="battery_heater"]').click()
        wait(f"the heater {mode} in truth", lambda: control(run["control"], "truth.get")["satellite"]["thermal"]
             ["heaters"]["battery_heater"]["mode"] == mode)

    # forced on, with its rail off: the element is shown unpowered, not "on"
    set_heater("on")
    drv.find_element(By.CSS_SELECTOR, '#rail-heaters button[data-act="off"]').click()
    wait("the heater shown unpowered", lambda: text(drv, "#heater-battery_heater td:nth-child(3)")
         == "on (no power: rail heaters off)")
    drv.find_element(By.CSS_SELECTOR, '#rail-heaters button[data-act="on"]').click()
    wait("the heater powered again", lambda: text(drv, "#heater-battery_heater td:nth-child(3)") == "on")
    set_heater("off")
    drv.set_window_size(1500, 2300)

    # a rail, as the board would switch it; the emulator's truth shows it off
    wait("the payload rail on", lambda: drv.find_element(By.ID, "rail-payload").get_attribute("data-state") == "ON")
    drv.find_element(By.CSS_SELECTOR, '#rail-payload button[data-act="off"]').click()
    reply = wait("the reply in the command log", lambda: [li for li in drv.find_elements(
        By.CSS_SELECTOR, "#cmd-log li") if "eps.rail.set" in li.text])[0]
    assert reply.get_attribute("data-ok") == "1", reply.text
    rails = control(run["control"], "truth.get")["satellite"]["power"]["rails"]
    assert rails["payload"]["on"] is False and rails["payload"]["commanded_on"] is False
    wait("the page to show it off", lambda: drv.find_element(By.ID, "rail-payload").get_attribute("data-state") == "OFF")
    run["rail_off_t_ns"] = control(run["control"], "clock.status")["t_ns"]

    # a fault through the form generated from its schema, with a duration
    Select(drv.find_element(By.ID, "fault-name")).select_by_value("eps.rail.short")
    form = drv.find_element(By.ID, "fault-fields")
    form.find_element(By.NAME, "rail").send_keys("comms_5v")
    form.find_element(By.NAME, "extra_a").send_keys("0.5")
    form.find_element(By.NAME, "__duration_s").send_keys("3600")
    drv.find_element(By.ID, "fault-inject").click()
    item = wait("the fault listed active", lambda: drv.find_elements(
        By.CSS_SELECTOR, '#faults-active li[data-fault-name="eps.rail.short"]'))[0]
    faults = control(run["control"], "truth.get")["faults"]
    assert [(f["name"], f["params"]) for f in faults] == [("eps.rail.short", {"rail": "comms_5v", "extra_a": 0.5})]
    assert faults[0]["until_ns"] - faults[0]["t_ns"] == 3600 * NS
    assert f"#{faults[0]['fault_id']}" in item.text
    # the event lists the fault at once; its expiry comes with the next poll (until then: "until cleared")
    expiry = re.compile(r"until 2026-\d\d-\d\d \d\d:\d\d:\d\d sim time \(\d+m\d\ds left\)")
    wait("the fault's expiry", lambda: [li for li in drv.find_elements(
        By.CSS_SELECTOR, '#faults-active li[data-fault-name="eps.rail.short"]') if expiry.search(li.text)])
    # a permanent fault is listed as such, with no Clear button that could only be refused
    Select(drv.find_element(By.ID, "fault-name")).select_by_value("radiation.seu")
    drv.find_element(By.ID, "fault-inject").click()
    seu = wait("the permanent fault listed", lambda: drv.find_elements(
        By.CSS_SELECTOR, '#faults-active li[data-fault-name="radiation.seu"]'))[0]
    wait("its words", lambda: "permanent" in seu.text)
    assert not seu.find_elements(By.CSS_SELECTOR, "button[data-clear]")
    Select(drv.find_element(By.ID, "fault-name")).select_by_value("eps.rail.short")
    drv.find_element(By.ID, "fault-fields").find_element(By.NAME, "extra_a").send_keys("0.5")
    # a refusal is shown as the emulator words it
    rail = drv.find_element(By.ID, "fault-fields").find_element(By.NAME, "rail")
    rail.clear()
    rail.send_keys("nosuchrail")
    drv.find_element(By.ID, "fault-inject").click()
    err = wait("the refusal", lambda: [li for li in drv.find_elements(By.CSS_SELECTOR, '#cmd-log li[data-ok="0"]')
                                       if "fault.inject" in li.text])[0]
    assert "unknown rail 'nosuchrail'" in err.text
    assert "jobs done" in text(drv, "#accel") and "control link" in text(drv, "#links")
    wait("no board connected", lambda: "no board connected (board plane listening)" in text(drv, "#links"))
    # clear it from the list
    wait("the fault's clear button", lambda: drv.find_elements(By.CSS_SELECTOR, "#faults-active button[data-clear]"))
    drv.find_element(By.CSS_SELECTOR, "#faults-active button[data-clear]").click()
    wait("the fault cleared", lambda: not drv.find_elements(
        By.CSS_SELECTOR, '#faults-active li[data-fault-name="eps.rail.short"]'))
    assert [f["name"] for f in control(run["control"], "truth.get")["faults"]] == ["radiation.seu"]

    # the clock from the page: fast-forward through the next eclipse, pause, step, back to scaled
    ecl = next(e for e in control(run["control"], "orbit.predict")["eclipses"] if e["exit_ns"] > 0)
    Select(drv.find_element(By.ID, "mode")).select_by_value("afap")
    drv.find_element(By.ID, "btn-mode").click()
    wait("the eclipse to pass", lambda: control(run["control"], "clock.status")["t_ns"] > ecl["exit_ns"] + 300 * NS,
         timeout_s=3 * WAIT_S)
    drv.find_element(By.ID, "btn-pause").click()
    paused = wait("the clock paused", lambda: (st := control(run["control"], "clock.status"))["paused"] and st)
    drv.find_element(By.ID, "step-s").clear()
    drv.find_element(By.ID, "step-s").send_keys("120")
    drv.find_element(By.ID, "btn-step").click()
    wait("a step of 120 s", lambda: control(run["control"], "clock.status")["t_ns"] >= paused["t_ns"] + 120 * NS)
    wait("the page paused after the step", lambda: "paused" in text(drv, "#clock-mode"))
    for select in drv.find_elements(By.CSS_SELECTOR, ".plot select.window"):  # 2 h: the eclipse is in view
        Select(select).select_by_value("7200")
    # a plot's shapes: the dotted line at now, and a shaded rectangle per eclipse
    wait("the eclipse shaded in a plot", lambda: len(drv.find_elements(
        By.CSS_SELECTOR, ".plot:first-child .shapelayer path")) >= 2)
    # a console that fell behind the fast-forward reads its backlog while the clock stands still
    wait("the plots to catch up", lambda: drv.execute_script(
        "return ui.plots.length && ui.view && Number(ui.plots[0].div.dataset.lastX) >= ui.view.unix_ms - 120000"),
        timeout_s=3 * WAIT_S)  # hours of fast-forwarded telemetry to read on a loaded machine
    shoot(drv, "console-live.png")
    drv.find_element(By.CSS_SELECTOR, "#card-orbit").screenshot(str(SHOTS / "console-orbit.png"))
    drv.find_element(By.CSS_SELECTOR, "#plots").screenshot(str(SHOTS / "console-plots.png"))
    # back to scaled while still paused, then resume: resumed in afap, the rest of the 6 h run would pass (and the
    # emulator exit) in about a second, which a loaded machine can take to send the mode change
    drv.find_element(By.ID, "speed").clear()
    drv.find_element(By.ID, "speed").send_keys("30")
    Select(drv.find_element(By.ID, "mode")).select_by_value("scaled")
    drv.find_element(By.ID, "btn-mode").click()
    wait("scaled, still paused", lambda: (st := control(run["control"], "clock.status"))["mode"] == "scaled"
         and st["paused"])
    drv.find_element(By.ID, "btn-resume").click()
    wait("scaled again", lambda: (st := control(run["control"], "clock.status"))["mode"] == "scaled"
         and not st["paused"])

    assert console_errors(drv) == []


def test_the_recording_is_scrubbed_with_the_time_slider(browser: Any, run: dict[str, Any]) -> None:
    if "rail_off_t_ns" not in run:  # the live test ran on another worker (its own run): switch the rail here
        wait("a minute of sim time", lambda: control(run["control"], "clock.status")["t_ns"] > 60 * NS)
        control(run["control"], "board.command", {"topic": "eps.rail.set", "payload": {"rail": "payload", "on": False}})
        run["rail_off_t_ns"] = off = control(run["control"], "clock.status")["t_ns"]
        # an hour more to scrub through, at once: afap to a pause an hour on (not to the end of the 6 h run, which
        # afap reaches in about a second), then scaled again
        control(run["control"], "clock.run_until", {"t_s": off / NS + 3600.0})
        control(run["control"], "clock.set_mode", {"mode": "afap"})
        wait("an hour after", lambda: (st := control(run["control"], "clock.status"))["paused"]
             and st["t_ns"] >= off + 3600 * NS)
        control(run["control"], "clock.set_mode", {"mode": "scaled", "speed": 30.0})
        control(run["control"], "clock.resume")
    control(run["control"], "sim.stop", {"reason": "console test: recording done"})
    run["emu"].wait(WAIT_S)
    drv = browser
    drv.get("about:blank")  # leave the live page first: it would retry its link to the console stopped next
    drv.get_log("browser")  # (the live test checked its own log)
    stop(run["procs"]["console"])
    # the same address as the live console: the browser reuses the plotly.js it cached
    listen = re.search(r"http://(\S+?)/", run["page"]).group(1)
    con, page = start(["console", "--recording", str(run["rec"]), "--listen", listen, "--nice", "0"],
                      run["dir"] / "console-rec.log", r"open (http://\S+)")
    run["procs"]["recording-console"] = con
    try:
        drv.get(page)
        wait("the playback bar", lambda: drv.find_element(By.ID, "playback").is_displayed())
        assert not drv.find_element(By.ID, "steer").is_displayed()
        end = wait("the end of the recording", lambda: text(drv, "#sim-utc") not in ("", "–") and text(drv, "#sim-utc"))
        wait("the payload rail off at the end",
             lambda: drv.find_element(By.ID, "rail-payload").get_attribute("data-state") == "OFF")
        slider = drv.find_element(By.ID, "slider")
        slider.send_keys(Keys.HOME)  # scrub to the start: before the rail was switched off
        wait("the start of the recording", lambda: text(drv, "#sim-utc") == "2026-06-21 00:00:00Z")
        wait("the payload rail on at the start",
             lambda: drv.find_element(By.ID, "rail-payload").get_attribute("data-state") == "ON")
        for _ in range(3):
            slider.send_keys(Keys.ARROW_RIGHT)
        wait("time to move with the slider", lambda: "2026-06-21 00:00:00Z" != text(drv, "#sim-utc") != end)
        wait("a plot with points", lambda: int(drv.find_element(By.CSS_SELECTOR, ".plot").get_attribute("data-points")
                                                or 0) > 0)
        slider.send_keys(Keys.END)
        wait("the end again", lambda: text(drv, "#sim-utc") == end)
        shoot(drv, "console-recording.png")
        assert console_errors(drv) == []
    finally:
        stop(con)
