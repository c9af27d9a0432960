"""What the console knows about the satellite: the latest message per topic, the history, events, faults, the orbit.

Pure (no I/O): a source (:mod:`emulator.console.sources`) feeds control-plane messages to
:meth:`ConsoleState.ingest`; the server asks for :meth:`ConsoleState.view` (the panels, a few times a second)
and :meth:`ConsoleState.series` (the plots). A recording feeds the same class, so live and playback look alike.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from emulator.console.history import EclipseLog, History, TrackLog, TrackPoint, finite_or_none
from emulator.protocol.envelope import Message

NS_PER_S = 1_000_000_000
#: telemetry (periodic) topics, by name or suffix; every other topic is an event (cluster members prefix theirs)
TELEMETRY_TOPICS = ("truth.sample", "sim.clock", "sim.links")
TELEMETRY_SUFFIXES = (".telemetry", ".status", ".sun")
#: the satellite's truth (truth.sample) is plotted as satellite.<path>, like `flatsat export` and scenarios
TRUTH_PREFIX = "satellite."
#: the rail a heater is on when its truth does not say (the model's default, thermal.HeaterConfig.rail)
DEFAULT_HEATER_RAIL = "heaters"
EVENTS_KEPT = 1000
EVENTS_SHOWN = 60


def flat_numbers(tree: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """``{"power": {"bus_v": 7.9}}`` -> ``{"power.bus_v": 7.9}``: numbers and flags, lists indexed; the same names
    as :func:`emulator.series.flatten` (so a plot's field is an export column), values left as they came, at
    twice its speed (a satellite's truth has ~200 leaves and arrives at up to thousands a second)."""
    for key, value in tree.items():
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            out[prefix + key] = value
        elif kind is dict:
            flat_numbers(value, prefix + key + ".", out)
        elif kind is list and value:
            first = type(value[0])
            if first is dict:
                for i, item in enumerate(value):
                    if type(item) is dict:
                        flat_numbers(item, f"{prefix}{key}.{i}.", out)
            elif first is float or first is int or first is bool:
                for i, item in enumerate(value):
                    if type(item) in (float, int, bool):
                        out[f"{prefix}{key}.{i}"] = item
    return out


def is_telemetry(topic: str) -> bool:
    return topic in TELEMETRY_TOPICS or topic.endswith(TELEMETRY_SUFFIXES)


def field_prefix(topic: str) -> str:
    return TRUTH_PREFIX if topic == "truth.sample" else topic + "."


def fault_entry(changed: Mapping[str, Any], t_ns: int) -> dict[str, Any]:
    """An active fault as the page lists it, from its ``fault.changed`` event (received at ``t_ns``)."""
    return {"fault_id": changed["fault_id"], "name": changed.get("name"), "params": changed.get("params", {}),
            "t_ns": changed.get("t_ns", t_ns), "until_ns": changed.get("until_ns", -1)}


def is_cluster(truth: Mapping[str, Any]) -> bool:
    """A cluster's truth (``emulator.models.cluster``): every member value is a list over the ``n`` members."""
    return isinstance(truth.get("n"), int) and isinstance(truth.get("names"), list)


def default_member(truth: Mapping[str, Any]) -> int:
    """The member shown unless a page picks another: the (first) one a board drives, else member 0."""
    bound = truth.get("bound") or []
    return int(bound[0]) if bound else 0


def member_slice(tree: Any, k: int, n: int) -> Any:
    """Member ``k``'s values of a cluster's truth: every list over the n members becomes its k-th item."""
    if isinstance(tree, dict):
        return {key: member_slice(v, k, n) for key, v in tree.items()}
    if isinstance(tree, list) and len(tree) == n:
        return tree[k]
    return tree


def member_truth(truth: Mapping[str, Any], k: int) -> dict[str, Any]:
    """A cluster member's truth in a single satellite's shape (what the panels read): its environment, power,
    rails (on and trips: a member's rails have no measured current), temperatures, heaters (on only) and
    accelerator (the full board's when a board drives the member)."""
    n = truth["n"]
    env = member_slice(truth.get("environment") or {}, k, n)
    power = member_slice(truth.get("power") or {}, k, n)
    thermal = member_slice(truth.get("thermal") or {}, k, n)
    acc = member_slice(truth.get("accelerator") or {}, k, n)
    trips = power.get("rail_trips") or {}
    power["rails"] = {name: {"on": on, "trips": trips.get(name)} for name, on in (power.get("rails_on") or {}).items()}
    board = _get(truth, "members", str(k), "accelerator")
    if not isinstance(board, dict):
        counts = {kind: {"total": c} for kind, c in (acc.get("see_counts") or {}).items()}
        board = {**acc, "radiation": {"dose_krad": acc.get("dose_krad"), "counts": counts}}
    heaters = {name: {"on": on} for name, on in (thermal.get("heaters_on") or {}).items()}
    return {"environment": env, "power": power, "accelerator": board,
            "thermal": {"temps_degc": thermal.get("temps_degc") or {}, "heaters": heaters}}


def member_fields(truth: Mapping[str, Any], k: int) -> dict[str, Any]:
    """Member ``k``'s numbers of a cluster's truth under the names the whole truth flattens to
    (``satellite.power.soc.<k>``, as a scenario names them), and its board's (``satellite.members.<k>.``)."""
    n = truth["n"]
    out: dict[str, Any] = {}
    for key in ("environment", "power", "thermal", "accelerator"):
        sub = truth.get(key)
        if isinstance(sub, dict):
            for name, v in flat_numbers(member_slice(sub, k, n), f"{TRUTH_PREFIX}{key}.", {}).items():
                out[f"{name}.{k}"] = v
    board = _get(truth, "members", str(k))
    if isinstance(board, dict):
        flat_numbers(board, f"{TRUTH_PREFIX}members.{k}.", out)
    return out


def _get(tree: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return default
        tree = tree[key]
    return tree


class ConsoleState:
    """Everything the page shows, fed one control-plane message at a time."""

    def __init__(self) -> None:
        self.history = History()
        self.eclipses = EclipseLog()
        self.track = TrackLog()
        self.latest: dict[str, tuple[int, dict[str, Any]]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.event_counts: dict[str, int] = {}
        self.events_dropped = 0
        self.faults: dict[int, dict[str, Any]] = {}
        self.fault_schemas: list[dict[str, Any]] = []
        self.prediction: dict[str, Any] | None = None
        self.clock_status: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}
        self.epoch_unix_ns: int | None = None
        self.t_ns = 0
        self.stream_t_ns = 0
        self.messages = 0
        self._truth_seen = False
        #: a cluster: {"name", "n", "names", "bound"} (None: a single satellite)
        self.cluster: dict[str, Any] | None = None
        #: cluster members whose plots, eclipses and track are kept (from when a page first showed them)
        self.watched: set[int] = set()
        self.member_logs: dict[int, tuple[EclipseLog, TrackLog]] = {}

    # -- feeding ------------------------------------------------------------------------------------------------
    def ingest(self, msg: Message, *, history: bool = True, stream: bool = True) -> None:
        """Take one message. ``history=False``: the panels, not the plots (the source decimates). ``stream=False``:
        a sample the source asked for (``truth.get``), newer than what the stream has delivered when the console
        reads a backlog: it only refreshes the panels."""
        topic = msg.topic
        if topic == "reply":
            return
        t = msg.t_ns
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        if not stream:
            if t >= self.latest.get(topic, (-1, {}))[0]:
                self.latest[topic] = (t, payload)
                self.t_ns = max(self.t_ns, t)
            return
        self.messages += 1
        if t < self.stream_t_ns - NS_PER_S:  # the stream went back in time: a new run at the same address
            self.reset_run()
        self.stream_t_ns = max(self.stream_t_ns, t)
        self.t_ns = max(self.t_ns, t)
        if t >= self.latest.get(topic, (-1, {}))[0]:
            self.latest[topic] = (t, payload)
        if is_telemetry(topic):
            if topic == "truth.sample" and is_cluster(payload):
                self._ingest_cluster(t, payload, history)
            elif history:
                self.history.add(t, flat_numbers(payload, field_prefix(topic), {}))
            if topic == "truth.sample":
                self._truth_seen = True
                self._ingest_truth(t, payload)
            elif topic == "sim.clock" and self.epoch_unix_ns is None:
                self._set_epoch(payload)
            elif topic.endswith("adcs.sun") and not self._truth_seen and isinstance(payload.get("eclipse"), bool):
                self.eclipses.add(t, payload["eclipse"])  # no truth stream: the board's eclipse flag
            return
        if topic == "fault.changed":
            fid = payload.get("fault_id")
            if isinstance(fid, int):
                if payload.get("active"):
                    self.faults[fid] = fault_entry(payload, t)
                else:
                    self.faults.pop(fid, None)
        if topic == "sim.waiting":
            return
        if len(self.events) == self.events.maxlen:
            self.events_dropped += 1
        self.events.append({"t_ns": t, "topic": topic, "payload": payload})
        self.event_counts[topic] = self.event_counts.get(topic, 0) + 1

    def _ingest_cluster(self, t: int, truth: Mapping[str, Any], history: bool) -> None:
        """A cluster's truth (81 members: thousands of numbers): the plots keep the watched members' and the
        fleet's own (the inter-satellite links), not every member's."""
        self._note_cluster(truth)
        if not history:
            return
        values: dict[str, Any] = {}
        for k in sorted(self.watched):
            values.update(member_fields(truth, k))
        isl = truth.get("isl")
        if isinstance(isl, dict):
            flat_numbers(isl, f"{TRUTH_PREFIX}isl.", values)
        self.history.add(t, values)

    def _note_cluster(self, truth: Mapping[str, Any]) -> None:
        if self.cluster is None or self.cluster.get("n") != truth["n"]:
            self.cluster = {"name": truth.get("name"), "n": truth["n"], "names": list(truth["names"]),
                            "bound": list(truth.get("bound") or [])}
            self.watched = {default_member(truth)}
            self.member_logs = {}

    def watch(self, k: int) -> None:
        """Keep member ``k``'s plots, eclipses and track from now on (a page shows it)."""
        self.watched.add(k)

    def logs(self, member: int | None = None) -> tuple[EclipseLog, TrackLog]:
        """The eclipses and ground track of the satellite, or of a cluster member (default: the bound one)."""
        if self.cluster is None:
            return self.eclipses, self.track
        k = self.member(member)
        return self.member_logs.get(k) or (EclipseLog(), TrackLog())

    def member(self, member: int | None) -> int:
        """The member to show: the one asked for, else the one a board drives, else 0 (a cluster only)."""
        return member if member is not None else default_member(self.cluster or {})

    def _ingest_truth(self, t: int, truth: Mapping[str, Any]) -> None:
        if is_cluster(truth):
            for k in sorted(self.watched):
                eclipses, track = self.member_logs.setdefault(k, (EclipseLog(), TrackLog()))
                self._log_position(t, member_slice(truth.get("environment") or {}, k, truth["n"]), eclipses, track)
            return
        self._log_position(t, truth.get("environment") or {}, self.eclipses, self.track)

    @staticmethod
    def _log_position(t: int, env: Mapping[str, Any], eclipses: EclipseLog, track: TrackLog) -> None:
        sunlit = env.get("sunlit_frac")
        if isinstance(sunlit, int | float):
            eclipses.add(t, sunlit < 0.5)
            lat, lon = env.get("lat_deg"), env.get("lon_deg")
            if isinstance(lat, int | float) and isinstance(lon, int | float):
                track.add(TrackPoint(t, float(lat), float(lon), float(sunlit), bool(env.get("in_saa"))))

    def _set_epoch(self, clock: Mapping[str, Any]) -> None:
        utc, t = clock.get("utc"), clock.get("t_ns")
        if isinstance(utc, str) and isinstance(t, int):
            try:
                when = dt.datetime.fromisoformat(utc)
            except ValueError:
                return
            self.epoch_unix_ns = round(when.timestamp() * NS_PER_S) - t

    def set_epoch_utc(self, epoch_utc: str) -> None:
        when = dt.datetime.fromisoformat(epoch_utc)
        self.epoch_unix_ns = round(when.timestamp() * NS_PER_S)

    def apply_truth_get(self, data: Mapping[str, Any]) -> None:
        """The reply to ``truth.get``: active faults (with their expiry), the clock's wall-side status, and the
        truth itself where nothing newer was published (a paused or lockstep run publishes nothing)."""
        faults = data.get("faults")
        if isinstance(faults, list):
            self.faults = {f["fault_id"]: dict(f) for f in faults if isinstance(f, dict) and "fault_id" in f}
        clock = data.get("clock")
        t = data.get("t_ns")
        if isinstance(clock, dict):
            self.clock_status = dict(clock)
            if isinstance(t, int):
                self.ingest(Message("sim.clock", dict(clock), t_ns=t), stream=False)
                if self.epoch_unix_ns is None:
                    self._set_epoch(clock)
        sat = data.get("satellite")
        if isinstance(sat, dict) and is_cluster(sat):
            self._note_cluster(sat)
        if isinstance(sat, dict) and isinstance(t, int):
            self.ingest(Message("truth.sample", sat, t_ns=t), stream=False)

    def reset_run(self) -> None:
        self.history.clear()
        self.eclipses.clear()
        self.track.points.clear()
        self.latest.clear()
        self.events.clear()
        self.event_counts.clear()
        self.faults.clear()
        self.prediction = None
        self.t_ns = self.stream_t_ns = 0
        self.epoch_unix_ns = None
        self._truth_seen = False
        self.member_logs = {}

    # -- reading ------------------------------------------------------------------------------------------------
    def unix_ms(self, t_ns: int) -> float:
        return ((self.epoch_unix_ns or 0) + t_ns) / 1e6

    def utc(self, t_ns: int) -> str | None:
        if self.epoch_unix_ns is None:
            return None
        when = dt.datetime.fromtimestamp((self.epoch_unix_ns + t_ns) / NS_PER_S, tz=dt.UTC)
        return when.isoformat(timespec="seconds").replace("+00:00", "Z")

    def view(self, latest: Mapping[str, tuple[int, dict[str, Any]]] | None = None, t_ns: int | None = None,
             events: Iterable[dict[str, Any]] | None = None, faults: Iterable[dict[str, Any]] | None = None,
             prediction: Mapping[str, Any] | None = None, member: int | None = None,
             boards: Iterable[str] | None = None) -> dict[str, Any]:
        """The panels of the page at ``t_ns`` (default: now), from ``latest`` (default: the newest messages);
        of a cluster, one member's (``member``, default: the one a board drives, else 0). ``boards``: the boards
        that have said hello (default: as ``stats.get`` last said; None: not known)."""
        latest = self.latest if latest is None else latest
        t_ns = self.t_ns if t_ns is None else t_ns
        truth = latest.get("truth.sample", (0, {}))[1]
        fleet: dict[str, Any] | None = None
        if is_cluster(truth):
            k = self.member(member)
            if not 0 <= k < truth["n"]:
                k = default_member(truth)
            member = k
            bound = list(truth.get("bound") or [])
            fleet = {"name": truth.get("name"), "n": truth["n"], "names": truth["names"], "bound": bound,
                     "member": k, "isl": truth.get("isl")}
            # a board's topics: sat.<k>.<topic>, or plain for the one bound member ("plain" topics)
            latest = {topic: latest[f"sat.{k}.{topic}"] if f"sat.{k}.{topic}" in latest
                      else latest[topic] if topic in latest and bound == [k] else (0, {})
                      for topic in ("eps.telemetry", "thermal.telemetry", "accel.status")} | {
                          topic: latest[topic] for topic in ("sim.clock", "sim.links") if topic in latest}
            truth = member_truth(truth, k)
        clock = dict(latest.get("sim.clock", (0, {}))[1])
        if latest is self.latest and self.clock_status:
            for key in ("realtime_factor", "wall_elapsed_s", "limit_ns"):
                if key in self.clock_status:
                    clock[key] = self.clock_status[key]
        eps = latest.get("eps.telemetry", (0, {}))[1]
        power = truth.get("power") or {}
        env = truth.get("environment") or {}
        thermal = truth.get("thermal") or {}
        acc = truth.get("accelerator") or latest.get("accel.status", (0, {}))[1]
        rad = acc.get("radiation") or {}
        eps_rails = {r.get("name"): r for r in eps.get("rails", []) if isinstance(r, dict)}
        rails = []
        for name, r in (power.get("rails") or {}).items():
            rails.append({"name": name, **{k: r.get(k) for k in (
                "on", "commanded_on", "tripped", "latched", "trips", "retries", "current_a", "voltage_v", "power_w",
                "short_a")}, "measured_a": _get(eps_rails, name, "current_a")})
        if not rails:  # no truth stream: what the EPS board measures
            rails = [{"name": n, "on": r.get("on"), "commanded_on": None, "tripped": r.get("tripped"),
                      "latched": r.get("latched"), "trips": r.get("trips"), "current_a": r.get("current_a"),
                      "voltage_v": r.get("voltage_v"), "measured_a": r.get("current_a")} for n, r in eps_rails.items()]
        heaters = [{"name": n, **h} for n, h in (thermal.get("heaters") or {}).items()]
        if not heaters:
            heaters = [dict(h) for h in latest.get("thermal.telemetry", (0, {}))[1].get("heaters", [])]
        rail_on = {r["name"]: r.get("on") for r in rails}
        for h in heaters:
            # a satellite's truth names each heater's rail; a cluster's does not: then the model's default one
            rail = h.get("rail") or (DEFAULT_HEATER_RAIL if DEFAULT_HEATER_RAIL in rail_on else None)
            h["rail"] = rail
            h["powered"] = rail_on.get(rail) if rail is not None else None
        temps = thermal.get("temps_degc") or latest.get("thermal.telemetry", (0, {}))[1].get("temps_degc") or {}
        recent = list(self.events if events is None else events)[-EVENTS_SHOWN:]
        rad_events = [e for e in recent if e["topic"].endswith("radiation.event")][-20:]
        return {
            "t_ns": t_ns, "utc": self.utc(t_ns), "unix_ms": self.unix_ms(t_ns),
            "clock": clock,
            "battery": {"soc": power.get("soc"), "soc_est": eps.get("soc_est"), "voltage_v": power.get("battery_v"),
                        "current_a": power.get("battery_a"), "ocv_v": power.get("battery_ocv_v"),
                        "connected": power.get("battery_connected"), "capacity_ah": power.get("capacity_ah"),
                        "cells_alive": power.get("cells_alive")},
            "bus": {"bus_v": power.get("bus_v", eps.get("bus_v")), "array_w": power.get("array_w", eps.get("array_w")),
                    "shunt_w": power.get("shunt_w"), "mode": power.get("mode", eps.get("mode")),
                    "arrays": _arrays(power)},
            "rails": rails,
            "thermal": {"temps_degc": temps, "heaters": heaters},
            "accel": {k: acc.get(k) for k in ("state", "mode", "level", "clock_mhz", "throttle", "utilisation",
                                               "die_temp_degc", "load_w", "queue_len", "jobs_done", "jobs_failed",
                                               "jobs_corrupted", "units_done")},
            "radiation": {"dose_krad": rad.get("dose_krad"), "scale": rad.get("scale"),
                          "counts": {k: v.get("total") for k, v in (rad.get("counts") or {}).items()
                                     if isinstance(v, dict)},
                          "unhandled": len(rad["unhandled"]) if isinstance(rad.get("unhandled"), list) else None,
                          "dose_rate_rad_s": env.get("dose_rate_rad_s"), "in_saa": env.get("in_saa"),
                          "in_polar_horn": env.get("in_polar_horn"),
                          "events": [{"t_ns": e["t_ns"], "utc": self.utc(e["t_ns"]), **e["payload"]}
                                     for e in rad_events]},
            "orbit": self._orbit_view(t_ns, env, prediction if prediction is not None else self.prediction, member),
            "cluster": fleet,
            "links": latest.get("sim.links", (0, {}))[1],
            # a listening board plane is no board: the page says "no board connected" for an empty list
            "boards": sorted(boards) if boards is not None else
            sorted(self.stats["boards"]) if isinstance(self.stats.get("boards"), dict) else None,
            "stats": {k: self.stats.get(k) for k in ("commands", "rejected", "published", "boards")},
            "faults": sorted((dict(f) for f in (self.faults.values() if faults is None else faults)),
                             key=lambda f: f["fault_id"]),
            "events": [{"t_ns": e["t_ns"], "utc": self.utc(e["t_ns"]), "topic": e["topic"],
                        "text": _event_text(e["payload"])} for e in reversed(recent)],
            "event_counts": dict(self.event_counts),
            "messages": self.messages,
        }

    def _orbit_view(self, t_ns: int, env: Mapping[str, Any], pred: Mapping[str, Any] | None,
                    member: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {k: env.get(k) for k in ("lat_deg", "lon_deg", "alt_km", "beta_deg", "sunlit_frac",
                                                       "in_saa", "in_polar_horn", "local_solar_time_h")}
        nxt = cur = None
        for e in (pred or {}).get("eclipses", []):
            entry, exit_ = e.get("entry_ns", -1), e.get("exit_ns", -1)
            if (entry == -1 or entry <= t_ns) and (exit_ == -1 or exit_ > t_ns):
                cur = e
            elif entry > t_ns and nxt is None:
                nxt = e
        eclipses = self.logs(member)[0]
        if pred is None:  # playback, or a cluster (no predictions): what was seen so far
            c, n = eclipses.at(t_ns)
            cur = {"entry_ns": c[0], "exit_ns": c[1]} if c else None
            nxt = {"entry_ns": n[0], "exit_ns": n[1]} if n else None
        out["in_eclipse"] = cur is not None if (pred is not None or eclipses.last_ns is not None) else None
        out["eclipse_now"] = cur
        out["next_eclipse"] = nxt
        # no prediction (playback, a fleet): the period measured on the track, once it holds two ascending nodes
        out["period_s"] = (pred or {}).get("period_s") or self.logs(member)[1].nodal_period_s()
        if out["beta_deg"] is None and pred:
            out["beta_deg"] = pred.get("beta_deg")
        for key in ("eclipse_now", "next_eclipse"):
            e = out[key]
            if e:
                out[key] = {**e, "entry_utc": self.utc(e["entry_ns"]) if e["entry_ns"] >= 0 else None,
                            "exit_utc": self.utc(e["exit_ns"]) if e["exit_ns"] >= 0 else None,
                            "entry_in_s": (e["entry_ns"] - t_ns) / NS_PER_S if e["entry_ns"] >= 0 else None,
                            "exit_in_s": (e["exit_ns"] - t_ns) / NS_PER_S if e["exit_ns"] >= 0 else None}
        return out

    def map_data(self, t_ns: int | None = None, *, ahead: bool = False, member: int | None = None) -> dict[str, Any]:
        """The ground track for the map, split into sunlit / eclipse runs (None breaks a line): one period back,
        and one ahead (playback: what the recording holds; live: the prediction), the SAA passes and outline;
        of a cluster, one member's track (no prediction: nothing ahead)."""
        t_ns = self.t_ns if t_ns is None else t_ns
        pred = self.prediction
        track = self.logs(member)[1]
        period_ns = round(((pred or {}).get("period_s") or 6000.0) * NS_PER_S)
        past = track.between(t_ns - period_ns, t_ns)
        if ahead:
            future = track.between(t_ns, t_ns + period_ns)
        else:
            tr = (pred or {}).get("track") or {}
            future = [TrackPoint(t, la, lo, f, bool(s)) for t, la, lo, f, s in zip(
                tr.get("t_ns", []), tr.get("lat_deg", []), tr.get("lon_deg", []), tr.get("sunlit_frac", []),
                tr.get("in_saa", []), strict=False) if t >= t_ns]
        now = None
        if past:
            p = past[-1]
            now = {"lat_deg": p.lat_deg, "lon_deg": p.lon_deg, "sunlit": p.sunlit_frac >= 0.5, "in_saa": p.in_saa}
        return {"past": track_runs(past), "ahead": track_runs(future), "now": now,
                "saa_outline": (pred or {}).get("saa_outline")}

    def series(self, fields: Iterable[str], window_s: float, t_ns: int | None = None, max_points: int = 1200,
               *, centred: bool = False, member: int | None = None) -> dict[str, Any]:
        """Decimated samples of ``fields`` over the last ``window_s`` before ``t_ns`` (or around it, ``centred``),
        with the eclipses in that window for shading; times in Unix ms for a date axis."""
        t_ns = self.t_ns if t_ns is None else t_ns
        span = round(window_s * NS_PER_S)
        t0, t1 = (t_ns - span // 2, t_ns + span // 2) if centred else (t_ns - span, t_ns)
        data = self.history.query(fields, t0, t1, max_points)
        epoch = self.epoch_unix_ns or 0
        shade = [[(epoch + a) / 1e6, (epoch + b) / 1e6]
                 for a, b in self.logs(member)[0].between(t0, t1, None if centred else t_ns)]
        if self.prediction and not centred:
            shade += [[(epoch + e["entry_ns"]) / 1e6, (epoch + e["exit_ns"]) / 1e6]
                      for e in self.prediction.get("eclipses", []) if t0 <= e["entry_ns"] <= t1 and e["exit_ns"] > 0]
        return {"x0": (epoch + t0) / 1e6, "x1": (epoch + t1) / 1e6, "now": (epoch + t_ns) / 1e6,
                "eclipses": shade,
                "series": [{"field": s.field, "bin_s": s.bin_s, "x": ((s.t_ns + epoch) / 1e6).tolist(),
                            "y": finite_or_none(s.y)} for s in data]}


def track_runs(points: list[TrackPoint]) -> dict[str, dict[str, list[float | None]]]:
    """Lines for a map: ``sunlit`` and ``eclipse`` (None between runs and where the track crosses the
    antimeridian, so no line is drawn across the map) and the ``saa`` points."""
    out: dict[str, dict[str, list[float | None]]] = {k: {"lat": [], "lon": []} for k in ("sunlit", "eclipse", "saa")}
    prev: TrackPoint | None = None
    prev_kind = ""
    for p in points:
        kind = "sunlit" if p.sunlit_frac >= 0.5 else "eclipse"
        jump = prev is not None and abs(p.lon_deg - prev.lon_deg) > 180.0
        if prev is not None and not jump and kind != prev_kind:
            line = out[prev_kind]  # close the previous run at this point, so the runs meet
            line["lat"].append(p.lat_deg)
            line["lon"].append(p.lon_deg)
        if prev is not None and (jump or kind != prev_kind):
            out[prev_kind]["lat"].append(None)
            out[prev_kind]["lon"].append(None)
        out[kind]["lat"].append(p.lat_deg)
        out[kind]["lon"].append(p.lon_deg)
        if p.in_saa:
            out["saa"]["lat"].append(p.lat_deg)
            out["saa"]["lon"].append(p.lon_deg)
        prev, prev_kind = p, kind
    return out


def _arrays(power: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each solar array by name, its power and the fraction of its strings alive (as the truth gives them)."""
    watts, alive = power.get("arrays_w"), power.get("array_alive")
    if not isinstance(watts, Mapping):
        return []
    alive = alive if isinstance(alive, Mapping) else {}
    return [{"name": name, "power_w": w, "alive": alive.get(name)} for name, w in watts.items()]


def _event_text(payload: Mapping[str, Any]) -> str:
    parts = []
    for key, value in payload.items():
        if key == "t_ns" or isinstance(value, dict | list):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)
