"""The reference payload controller: a well-behaved board that copes with orbit.

What it does, every control period (10 s of sim time by default), with the numbers of the one reference policy
(``emulator.reference_policy``), from what a board can see
(``eps.telemetry``, ``thermal.telemetry``, ``adcs.sun``, ``accel.status`` and events):

- **Energy.** Sheds its own load before the EPS has to: below ``soc_off`` it switches its rail
  off, below ``soc_low`` (or in eclipse with less than ``soc_eclipse``) it runs at the lowest
  DVFS level and stops taking work; it switches back on above ``soc_on``.
- **Heat.** Keeps the die under the software-slowdown threshold with DVFS: one level down above
  ``temp_high_degc``, one up below ``temp_low_degc``; after a thermal shutdown it waits until
  the die has cooled, then resets the board.
- **Work.** Keeps a short queue of inference jobs while energy and heat allow.
- **Silent data corruption.** Recomputes every result (``firmware_stubs.jobcheck``), sends a
  verdict, and resubmits a corrupted job.
- **One round trip a turn.** Job submissions and verdicts are posted
  (:meth:`~firmware_stubs.base.BoardClient.post`): they go out with the turn's ``board.step`` and
  their replies are taken after it; a refused one is logged and counted like any refused command,
  and the rest of the turn still runs. Requests whose reply decides something (DVFS, resets) wait.
- **Hangs and latch-ups.** Resets a hung board; power-cycles its rail after a latch-up or a
  latched current limiter (``eps.rail.reset`` + off/on).
- **A bad line.** Every decision is made again each turn from the latest telemetry, so a request
  lost on the line (:class:`~firmware_stubs.base.RequestLostError`) only cuts a turn short: the next
  turn sees whether it took effect and acts again. A lost event handler does not cost the others.
"""

from __future__ import annotations

from typing import Any

from emulator.reference_policy import REFERENCE
from firmware_stubs.base import NS_PER_S, BoardClient, Controller, RequestLostError
from firmware_stubs.jobcheck import check_job

WORKING = ("idle", "busy", "throttled")


class ReferenceController(Controller):
    """Well-behaved payload controller: energy- and heat-aware, checks results, recovers from faults."""

    name = "reference"
    version = "1.0.0"
    # the one reference policy's numbers (emulator/reference_policy.py; the C stub's fsb_policy.h is generated from
    # it and the cluster's built-in policy reads it)
    period_s = REFERENCE.period_s
    turn_topics = ("eps.telemetry", "accel.status", "adcs.sun")  # what on_tick reads (and events)

    rail = REFERENCE.rail
    levels: tuple[str, ...] = REFERENCE.levels
    soc_off = REFERENCE.soc_off
    soc_low = REFERENCE.soc_low
    soc_on = REFERENCE.soc_on
    soc_eclipse = REFERENCE.soc_eclipse
    temp_high_degc = REFERENCE.temp_high_degc
    temp_low_degc = REFERENCE.temp_low_degc
    temp_restart_degc = REFERENCE.temp_restart_degc
    queue_target = REFERENCE.queue_target
    job_size = REFERENCE.job_size

    def __init__(self) -> None:
        super().__init__()
        self.level = REFERENCE.start_level
        self.next_seed = 1
        self.checked = 0
        self.corrupted = 0
        self.power_cycle_pending = False
        self.shutdown_thermal = False
        self.rail_off_by_me = False

    async def on_start(self, board: BoardClient) -> None:
        await board.request("eps.rail.set", {"rail": self.rail, "on": True})
        self.log.add(board.t_ns, f"switched rail {self.rail} on")

    async def on_tick(self, board: BoardClient) -> None:
        for ev in board.events():
            try:
                await self.on_event(board, ev.topic, ev.payload)
            except RequestLostError as exc:
                self.log.add(board.t_ns, f"{ev.topic}: {exc}")
        eps = board.latest.get("eps.telemetry")
        acc = board.latest.get("accel.status")
        if eps is None or acc is None:
            return
        rail = next((r for r in eps["rails"] if r["name"] == self.rail), None)
        soc = eps["soc_est"]
        eclipse = bool(board.latest.get("adcs.sun", {}).get("eclipse", False))
        state = acc["state"]
        t = board.t_ns

        # -- power: latched limiter or pending power cycle -------------------------------------
        if rail is not None and rail["latched"]:
            await board.request("eps.rail.reset", {"rail": self.rail})
            self.log.add(t, f"rail {self.rail} latched off by its limiter: reset it")
        if self.power_cycle_pending:
            await board.request("eps.rail.set", {"rail": self.rail, "on": True})
            self.power_cycle_pending = False
            self.log.add(t, "power cycle: rail back on")
            return
        if state == "latched_up":
            await board.request("eps.rail.set", {"rail": self.rail, "on": False})
            self.power_cycle_pending = True
            self.log.add(t, "latch-up: power-cycling the rail")
            return

        # -- energy ------------------------------------------------------------------------------
        if soc < self.soc_off and not self.rail_off_by_me:
            await board.request("eps.rail.set", {"rail": self.rail, "on": False})
            self.rail_off_by_me = True
            self.log.add(t, f"battery {soc:.0%} < {self.soc_off:.0%}: payload rail off")
            return
        if self.rail_off_by_me:
            if soc >= self.soc_on and not eclipse:
                await board.request("eps.rail.set", {"rail": self.rail, "on": True})
                self.rail_off_by_me = False
                self.log.add(t, f"battery {soc:.0%}: payload rail back on")
            return

        # -- board health ------------------------------------------------------------------------
        if state == "hung":
            await board.request("accel.reset")
            self.log.add(t, "board hung: reset")
            return
        if state == "off" and self.shutdown_thermal:
            if acc["die_temp_degc"] < self.temp_restart_degc:
                reply = await board.request("accel.reset", check=False)
                if reply.get("ok", True) is not False:
                    self.shutdown_thermal = False
                    self.log.add(t, "die cooled after thermal shutdown: reset")
            return
        if state not in WORKING:
            return

        # -- DVFS: energy and heat ---------------------------------------------------------------
        starved = soc < self.soc_low or (eclipse and soc < self.soc_eclipse)
        want = self._level_index(self.level)
        die = acc["die_temp_degc"]
        if starved:
            want = 0
        elif die > self.temp_high_degc or acc["throttle"] != "none":
            want = max(0, want - 1)
        elif die < self.temp_low_degc:
            want = min(len(self.levels) - 2, want + 1)  # "max" buys little throughput for a lot of heat
        if self.levels[want] != acc["level"]:
            await self._set_level(board, self.levels[want])

        # -- work --------------------------------------------------------------------------------
        if not starved and die < self.temp_high_degc:
            for _ in range(self.queue_target - acc["queue_len"]):
                await self._submit(board, "inference", self.next_seed)
                self.next_seed += 1

    async def on_event(self, board: BoardClient, topic: str, payload: dict[str, Any]) -> None:
        t = board.t_ns
        if topic == "accel.job.done":
            if payload["ok"]:
                good = check_job(payload)
                self.checked += 1
                await board.post("accel.job.verdict", {"id": payload["id"], "ok": good})
                if not good:
                    self.corrupted += 1
                    self.log.add(t, f"job {payload['id']}: result corrupted (digest mismatch): rejected, resubmitted")
                    await self._submit(board, payload["kind"], payload["seed"], check=False)
        elif topic == "accel.power" and not payload["on"]:
            if payload["reason"] == "thermal_shutdown":
                self.shutdown_thermal = True
                self.log.add(t, "thermal shutdown reported")
            elif payload["reason"] == "latchup":
                # cut while latched up: by the rail's limiter, or by our own power cycle; either way the rail
                # comes back on the next turn (eps.rail.reset if latched, or the pending cycle)
                self.log.add(t, "latch-up: power cut")

    async def _submit(self, board: BoardClient, kind: str, seed: int, check: bool = True) -> None:
        # posted: nothing in the turn reads the reply; it goes out with the turn's step (one round trip a turn)
        await board.post("accel.job.submit", {"kind": kind, "size": self.job_size, "seed": seed}, check=check)

    async def _set_level(self, board: BoardClient, level: str) -> None:
        reply = await board.request("accel.dvfs.set", {"level": level}, check=False)
        if reply.get("ok") is False and reply.get("error", {}).get("field") == "payload.level":
            self.levels = tuple(reply["error"].get("valid") or self.levels)
            return
        self.level = level
        self.log.add(board.t_ns, f"DVFS -> {level}")

    def _level_index(self, level: str) -> int:
        return self.levels.index(level) if level in self.levels else len(self.levels) // 2


__all__ = ["NS_PER_S", "ReferenceController"]
