"""The console with a cluster: one member at a time, the plots of the members shown, the track from truth."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.console.state import ConsoleState, member_fields
from emulator.protocol.envelope import Message

NS = 1_000_000_000
N = 3


def cluster_truth(t_s: float) -> dict[str, Any]:
    """A cluster's truth as emulator.models.cluster gives it: every member value a list over the members."""
    per = lambda *v: list(v)
    return {
        "name": "trio", "t_ns": round(t_s * NS), "n": N, "names": ["trio-0", "trio-1", "trio-2"], "bound": [1],
        "environment": {"sunlit_frac": per(1.0, 0.0, 1.0), "lat_deg": per(10.0, 11.0 + t_s / 100, 12.0),
                        "lon_deg": per(20.0, 21.0 + t_s / 100, 22.0), "in_saa": per(False, True, False),
                        "dose_rate_rad_s": per(1e-6, 2e-6, 3e-6)},
        "power": {"soc": per(0.5, 0.6, 0.7), "bus_v": per(7.5, 7.6, 7.7), "battery_a": per(-1.0, 0.5, 1.0),
                  "mode": per("full", "shed", "full"), "rails_on": {"payload": per(True, False, True)},
                  "rail_trips": {"payload": per(0, 2, 0)}},
        "thermal": {"temps_degc": {"battery": per(1.0, 2.0, 3.0)}, "heaters_on": {"battery_heater": per(0, 1, 0)}},
        "accelerator": {"state": per("busy", "off", "idle"), "load_w": per(50.0, 0.0, 10.0),
                        "dose_krad": per(0.1, 0.2, 0.3), "see_counts": {"seu": per(1, 2, 3)}},
        "isl": {"ring_links": 3, "ring_down": 0},
        "members": {},
    }


def test_a_cluster_is_shown_one_member_at_a_time() -> None:
    state = ConsoleState()
    for t in range(0, 200, 10):
        state.ingest(Message("truth.sample", cluster_truth(t), t_ns=t * NS))
    view = state.view()  # the member a board drives
    assert view["cluster"]["member"] == 1 and view["cluster"]["n"] == N
    assert view["battery"]["soc"] == 0.6 and view["battery"]["current_a"] == 0.5 and view["bus"]["mode"] == "shed"
    assert view["radiation"]["in_saa"] is True and view["radiation"]["dose_rate_rad_s"] == 2e-6
    assert view["radiation"]["counts"] == {"seu": 2} and view["accel"]["state"] == "off"
    assert view["thermal"]["temps_degc"] == {"battery": 2.0}
    assert [(r["name"], r["on"], r["trips"]) for r in view["rails"]] == [("payload", False, 2)]
    # no rail named heaters (the default a heater is on) in this fleet: whether it is powered is not known
    assert view["thermal"]["heaters"] == [{"name": "battery_heater", "on": 1, "rail": None, "powered": None}]
    assert view["cluster"]["isl"] == {"ring_links": 3, "ring_down": 0}  # the fleet's own, apart
    other = state.view(member=2)
    assert other["cluster"]["member"] == 2 and other["battery"]["soc"] == 0.7 and other["radiation"]["in_saa"] is False
    assert state.view(member=7)["cluster"]["member"] == 1  # out of range: the default, never a list
    # no orbit.predict for a fleet: the member's track comes from its truth positions
    track = state.map_data(member=None)  # a point every 20 s of sim time
    assert track["now"] == {"lat_deg": 12.8, "lon_deg": 22.8, "sunlit": False, "in_saa": True}
    assert view["orbit"]["in_eclipse"] is True and view["orbit"]["lat_deg"] == 12.9
    # the plots keep the members shown, under the names a scenario uses; not every member's thousands of fields
    fields = set(state.history.fields())
    assert {"satellite.power.soc.1", "satellite.thermal.temps_degc.battery.1", "satellite.isl.ring_links"} <= fields
    assert "satellite.power.soc.0" not in fields
    state.watch(0)
    state.ingest(Message("truth.sample", cluster_truth(200), t_ns=200 * NS))
    assert "satellite.power.soc.0" in state.history.fields()
    assert member_fields(cluster_truth(0), 2)["satellite.accelerator.see_counts.seu.2"] == 3


async def test_the_json_view_shows_the_member_asked_for() -> None:
    pytest.importorskip("aiohttp", reason="pip install 'flatsat[console]'")
    import aiohttp

    from emulator.console.server import ConsoleServer
    from emulator.console.sources import LiveSource

    state = ConsoleState()
    server = ConsoleServer(LiveSource("zmq+tcp://127.0.0.1:9", state))  # never started: the state is fed here
    url = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async def get(query: str) -> tuple[int, dict[str, Any]]:
                async with http.get(f"{url}api/view{query}") as r:
                    return r.status, await r.json()

            status, body = await get("?member=1")
            assert status == 400 and "not known yet" in body["error"]["message"]
            state.ingest(Message("truth.sample", cluster_truth(0), t_ns=0))
            assert (await get(""))[1]["cluster"]["member"] == 1  # the default: the member a board drives
            for given in ("2", "trio-2"):
                status, body = await get(f"?member={given}")
                assert status == 200 and body["cluster"]["member"] == 2 and body["battery"]["soc"] == 0.7
            for given in ("3", "trio-9", "-1"):
                status, body = await get(f"?member={given}")
                assert status == 400 and body["error"]["field"] == "member"
                assert "give an index 0..2 or a name: trio-0, trio-1, trio-2" in body["error"]["message"]
                assert body["error"]["valid"] == ["trio-0", "trio-1", "trio-2"]
    finally:
        await server.aclose()
    single = ConsoleState()
    single.ingest(Message("truth.sample", {"power": {"soc": 0.5}}, t_ns=0))
    server = ConsoleServer(LiveSource("zmq+tcp://127.0.0.1:9", single))
    url = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}api/view?member=0") as r:
            assert r.status == 400 and "single satellite" in (await r.json())["error"]["message"]
    finally:
        await server.aclose()
