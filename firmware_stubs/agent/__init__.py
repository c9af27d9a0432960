"""The board agent: puts a real Linux dev board (Jetson, Raspberry Pi, Coral, any Linux machine) in the loop.

``python -m firmware_stubs.agent --url zmq+tcp://EMULATOR:5550`` (or ``serial:///dev/ttyGS0?baud=921600``) runs on
the board, against an emulator whose ``[accelerator] mode = "external"``. It implements the board side of the
contract in docs/protocol-accelerator.md:

- **Measures** the board (:mod:`.sensors`): power monitors, thermal zones, RAPL, cpufreq, nvidia-smi, tegrastats.
  What it found is printed as a table on stderr and sent in the ``board.hello`` capabilities; a configured power
  estimate is labelled as one there and in the log.
- **Works** (:mod:`.workload`): a numpy inference loop or a user command.
- **Reports** ``accel.report`` (measured power, utilisation, die temperature, clock, jobs done, acknowledged
  effects) every ``1 / report_hz`` seconds of sim time: every turn in a board-driven lockstep run, by telemetry
  time when free-running.
- **Obeys**: ``accel.power`` off stops all work and all reports until ``on``, then restarts as from a cold boot
  (the first report ends ``booting``); ``accel.throttle`` sets the workload's duty and caps the CPU clock through
  cpufreq where allowed; ``accel.effect`` ``sdc`` corrupts one bit of the next result (the agent's checker finds it
  and sends ``accel.job.verdict {id, ok: false, effect_id}``), ``hang`` freezes the workload (a watchdog notices
  the missing progress and sends ``accel.reset``, then restarts the work), ``reboot`` restarts the workload and
  acknowledges the effect in the next report, ``mbu`` fails the job in flight, resubmits it and acknowledges.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emulator.errors import CommandError, ConfigError, EmulatorError
from firmware_stubs.agent.sensors import Reading, SensorOptions, Sensors
from firmware_stubs.agent.workload import CommandWorkload, FinishedJob, NumpyWorkload, Workload
from firmware_stubs.base import (
    NS_PER_S,
    BoardClient,
    BoardLog,
    Controller,
    RetryPolicy,
    add_link_arguments,
    policy_from,
    run_board,
    run_until_signalled,
)
from firmware_stubs.jobcheck import expected_result

log = logging.getLogger("flatsat.agent")

#: board.hello accepts at most this many capability strings (emulator/protocol/system.py BoardHello)
MAX_CAPABILITIES = 64


@dataclass
class AgentOptions:
    """Everything the command line sets (see ``python -m firmware_stubs.agent --help``)."""

    name: str = field(default_factory=lambda: (socket.gethostname() or "agent")[:64])
    report_hz: float = 1.0
    workload_cmd: str | None = None
    matrix_dim: int = 256
    batches: int = 8
    result_dim: int = 64
    workload_cpus: int | None = None
    #: wall seconds without progress before the watchdog resets the board (0: no watchdog)
    watchdog_s: float = 5.0
    #: utilisation and RAPL power are rates over at least this much wall time
    min_window_s: float = 0.5
    #: act as the OBC for this PDU rail: reset its current limiter when it latches off (None: leave rails alone)
    recover_rail: str | None = None
    sensors: SensorOptions = field(default_factory=SensorOptions)


class Agent(Controller):
    """Board agent for external mode: measures, works, reports, and enacts the emulator's events."""

    name = "agent"
    version = "1.0.0"

    def __init__(self, options: AgentOptions | None = None, *, sensors: Sensors | None = None,
                 workload: Workload | None = None) -> None:
        super().__init__()
        self.options = o = options or AgentOptions()
        if not o.report_hz > 0:
            raise ConfigError(f"--report-hz must be > 0, got {o.report_hz}", field="report_hz")
        self.name = o.name
        self.period_s = 1.0 / o.report_hz
        o.sensors.min_window_s = o.min_window_s
        self.sensors = sensors if sensors is not None else Sensors(o.sensors).discover()
        if workload is None:
            if o.workload_cmd:
                workload = CommandWorkload(o.workload_cmd, cpus=o.workload_cpus, min_window_s=o.min_window_s)
            else:
                workload = NumpyWorkload(matrix_dim=o.matrix_dim, batches=o.batches, result_dim=o.result_dim,
                                         min_window_s=o.min_window_s)
        self.workload = workload
        self.powered = False
        self.emulator_state: str | None = None
        self.throttle: dict[str, Any] = {"level": "none", "clock_cap_mhz": None, "duty": 1.0}
        self.stats: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self.last_report: dict[str, Any] | None = None
        self.last_reading: Reading | None = None
        self._acks: list[int] = []
        self._synced = False
        self._rail_reset_t_ns = -10 * NS_PER_S
        self._warned: set[str] = set()
        plan = self.sensors.power_plan
        if plan is not None and plan.kind == "estimate":
            log.warning("power: reporting an ESTIMATE (%s); no power monitor was found", plan.description)

    # -- identity --------------------------------------------------------------------------------------------------
    def capabilities(self) -> list[str]:
        effects = "sdc,hang,reboot,mbu" if self.workload.can_corrupt else "hang,reboot,mbu"
        caps = ["lockstep", "external", f"workload:{self.workload.kind}", f"effects:{effects}", "throttle:duty"]
        caps += self.sensors.capabilities()
        return caps[:MAX_CAPABILITIES]

    @staticmethod
    async def _ask(board: BoardClient, topic: str, payload: dict[str, Any] | None = None, *,
                   repeat: bool | None = None) -> tuple[dict[str, Any] | None, CommandError | None]:
        """A request whose refusal is an answer, not an exception: ``(data, None)`` or ``(None, error)``. A request
        lost on the line raises :class:`~firmware_stubs.base.RequestLostError` (the turn ends; the next one tries
        again from what telemetry shows)."""
        try:
            return await board.request(topic, payload or {}, repeat=repeat), None
        except CommandError as exc:
            return None, exc

    def _warn_once(self, key: str, text: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(text, *args)

    # -- the loop --------------------------------------------------------------------------------------------------
    async def on_start(self, board: BoardClient) -> None:
        self.log.add(board.t_ns, "connected; waiting for accel.status or accel.power to learn whether the board is "
                                 "powered")

    async def on_tick(self, board: BoardClient) -> None:
        for ev in board.events():
            await self.on_event(board, ev.topic, ev.payload)
        if not self._synced:
            await self._sync(board)
        if self.options.recover_rail:
            await self._recover_rail(board, self.options.recover_rail)
        if not self.powered:
            return
        await self._check_jobs(board)
        await self._watchdog(board)
        if self.powered:
            await self._report(board)

    async def _sync(self, board: BoardClient) -> None:
        """First contact: start only if the emulator has the board powered (a report to an unpowered board is
        refused). The first accel.status (1 Hz) or accel.power event tells."""
        state = (board.latest.get("accel.status") or {}).get("state")
        if state is None:
            return
        self._synced = True
        self.emulator_state = state
        if state == "hung":   # left hung by an earlier session: this agent starts from scratch
            _, err = await self._ask(board, "accel.reset")
            self.log.add(board.t_ns, "the emulator had the board hung: accel.reset " +
                         ("sent" if err is None else f"refused ({err.message})"))
            state = "booting" if err is None else state
        if state in ("booting", "idle", "busy", "throttled") and not self.powered:
            self._power_on(board, f"accel.status {state}")
        elif not self.powered:
            self.log.add(board.t_ns, f"accel.status {state}: waiting for accel.power on")

    async def on_event(self, board: BoardClient, topic: str, payload: dict[str, Any]) -> None:
        if topic == "accel.power":
            if payload.get("on"):
                self._power_on(board, f"accel.power on ({payload.get('reason')})")
            else:
                self._power_off(board, f"accel.power off ({payload.get('reason')})")
        elif topic == "accel.throttle":
            self._apply_throttle(board, payload)
        elif topic == "accel.effect":
            await self._apply_effect(board, payload)
        elif topic == "accel.state":
            self.emulator_state = payload.get("state")

    async def _recover_rail(self, board: BoardClient, name: str) -> None:
        """OBC duty, when asked for: a limiter that latched off (no retries left) is reset, at most once per 10 sim s,
        and only once the board has been seen unpowered (``accel.power`` off), so a latched-up chip is really
        power-cycled and not re-energised while it still conducts."""
        if self.powered:
            return
        rails = (board.latest.get("eps.telemetry") or {}).get("rails") or []
        rail = next((r for r in rails if r.get("name") == name), None)
        if rail is None or not rail.get("latched") or board.t_ns - self._rail_reset_t_ns < 10 * NS_PER_S:
            return
        self._rail_reset_t_ns = board.t_ns
        _, err = await self._ask(board, "eps.rail.reset", {"rail": name})
        self.stats["rail_resets"] += 1
        self.log.add(board.t_ns, f"rail {name} latched off by its limiter: eps.rail.reset " +
                     ("sent" if err is None else f"refused ({err.message})"))

    # -- power -----------------------------------------------------------------------------------------------------
    def _power_on(self, board: BoardClient, why: str) -> None:
        self._synced = True
        self.workload.start()          # a cold boot: the first report after it ends "booting"
        self.powered = True
        self.stats["boots"] += 1
        self.log.add(board.t_ns, f"{why}: workload started (cold boot)")

    def _power_off(self, board: BoardClient, why: str) -> None:
        self._synced = True
        if self.powered:
            self.workload.stop()
            self.stats["power_offs"] += 1
        self.powered = False
        self.log.add(board.t_ns, f"{why}: all work stopped, reports stopped")

    # -- throttle --------------------------------------------------------------------------------------------------
    def _apply_throttle(self, board: BoardClient, p: dict[str, Any]) -> None:
        level = str(p.get("level", "none"))
        duty = float(p.get("duty", 1.0))
        cap = float(p["clock_cap_mhz"]) if level != "none" and p.get("clock_cap_mhz") is not None else None
        self.throttle = {"level": level, "clock_cap_mhz": cap, "duty": duty}
        self.stats["throttles"] += 1
        self.workload.set_duty(duty)
        cpufreq = self.sensors.cpufreq
        if not cpufreq.present:
            clock = "no cpufreq on this board: clock cap not enforced" if cap is not None else "clock uncapped"
        else:
            problems = cpufreq.cap(cap)
            if problems:
                clock = f"clock cap {cap} MHz NOT applied: {'; '.join(problems[:2])}" if cap is not None else \
                    f"clock cap NOT restored: {'; '.join(problems[:2])}"
                log.warning("throttle: %s", clock)
            else:
                clock = f"scaling_max_freq capped at {cap:g} MHz" if cap is not None else "scaling_max_freq restored"
        self.log.add(board.t_ns, f"throttle {level}: duty {duty:g}; {clock}")

    # -- effects ---------------------------------------------------------------------------------------------------
    async def _apply_effect(self, board: BoardClient, p: dict[str, Any]) -> None:
        kind, eid = str(p.get("kind")), int(p.get("effect_id", -1))
        self.effects[kind] += 1
        t = board.t_ns
        if kind == "sdc":
            if self.workload.corrupt_next(eid):
                self.log.add(t, f"effect {eid} sdc: one bit of the next result will be flipped")
            else:
                self.log.add(t, f"effect {eid} sdc: cannot corrupt a {self.workload.kind} workload's results; "
                                "not enacted (it stays unhandled)")
        elif kind == "hang":
            self.workload.hang()
            self.log.add(t, f"effect {eid} hang: workload frozen (reports go on; the watchdog must reset)")
        elif kind == "reboot":
            self.workload.start()
            self._acks.append(eid)
            self.stats["boots"] += 1
            self.log.add(t, f"effect {eid} reboot: workload restarted as from a cold boot; acknowledged")
        elif kind == "mbu":
            self.workload.lose_job(eid)
            self.log.add(t, f"effect {eid} mbu: job in flight failed (uncorrectable memory error), resubmitted")
        else:
            self._warn_once(f"effect:{kind}", "unknown accel.effect kind %r ignored", kind)

    # -- watchdog --------------------------------------------------------------------------------------------------
    async def _watchdog(self, board: BoardClient) -> None:
        limit = self.options.watchdog_s
        w = self.workload
        if limit <= 0 or not self.powered or not w.expects_progress or w.heartbeat_age_s() <= limit:
            return
        age = w.heartbeat_age_s()
        _, err = await self._ask(board, "accel.reset")
        if err is not None:
            self.log.add(board.t_ns, f"watchdog: no progress for {age:.1f} s; accel.reset refused: {err.message}")
            w.heartbeat_s = w._mono()          # try again one watchdog period later
            return
        self.stats["resets"] += 1
        self.workload.start()
        self.stats["boots"] += 1
        self.log.add(board.t_ns, f"watchdog: no progress for {age:.1f} s: accel.reset sent, workload restarted")

    # -- results ---------------------------------------------------------------------------------------------------
    def check(self, job: FinishedJob) -> bool:
        """The application's result checker: recompute the job (docs/protocol-accelerator.md recipe) and compare."""
        return bool(np.array_equal(job.result, expected_result(job.seed, job.kind, job.result.shape[0])))

    async def _check_jobs(self, board: BoardClient) -> None:
        for job in self.workload.take_finished():
            good = self.check(job)
            self.stats["jobs_checked"] += 1
            if good and job.effect_id is None:
                continue
            payload: dict[str, Any] = {"id": job.id % 2**31, "ok": good}
            if job.effect_id is not None:
                payload["effect_id"] = job.effect_id
            if not good:
                self.stats["sdc_detected"] += 1
            _, err = await self._ask(board, "accel.job.verdict", payload)
            self.stats["verdicts"] += 1
            if err is not None:
                self.log.add(board.t_ns, f"verdict on job {job.id} refused: {err.message}")
            else:
                self.log.add(board.t_ns, f"job {job.id}: checker {'accepts' if good else 'REJECTS'} the result "
                                         f"(effect {job.effect_id}); verdict sent")

    # -- reports ---------------------------------------------------------------------------------------------------
    async def _report(self, board: BoardClient) -> None:
        util = self.workload.utilisation()
        reading = await asyncio.to_thread(self.sensors.sample, util)
        self.last_reading = reading
        if reading.power_w is None:
            self._warn_once("nopower", "power source gave no reading; report skipped until it does")
            return
        self._acks += self.workload.take_acked()
        payload: dict[str, Any] = {"power_w": float(reading.power_w), "utilisation": float(util),
                                   "jobs_done": int(self.workload.jobs_done), "acked_effects": list(self._acks)}
        if reading.die_temp_degc is not None:
            payload["die_temp_degc"] = float(reading.die_temp_degc)
        if reading.clock_mhz is not None and 0 <= reading.clock_mhz <= 10000:
            payload["clock_mhz"] = float(reading.clock_mhz)
        # a report that acknowledges effects is not repeated: a second copy would be refused (already acknowledged)
        data, err = await self._ask(board, "accel.report", payload, repeat=not self._acks)
        if err is None:
            self.stats["reports"] += 1
            self.last_report = payload
            self.emulator_state = (data or {}).get("state", self.emulator_state)
            if self._acks:
                self.log.add(board.t_ns, f"acknowledged effects {self._acks}")
            self._acks = []
            return
        self.stats["reports_refused"] += 1
        fld, msg = err.field, err.message
        if fld == "state":           # the emulator has the board unpowered: so must we be
            self._power_off(board, f"accel.report refused ({msg})")
        elif fld == "payload.acked_effects":
            self.log.add(board.t_ns, f"acknowledgements {self._acks} refused ({msg}); dropped")
            self._acks = []
        else:
            self._warn_once(f"report:{fld}", "accel.report refused: %s", msg)

    # -- end -------------------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the workload and restore the clock cap; idempotent."""
        self.workload.close()
        self.sensors.close()

    def summary(self) -> str:
        s = self.stats
        return (f"{s['reports']} reports ({s['reports_refused']} refused), {self.workload.jobs_done_total} jobs, "
                f"{s['sdc_detected']} corrupted results caught, {s['resets']} watchdog resets, {s['boots']} boots, "
                f"{s['power_offs']} power cuts, effects {dict(self.effects) or 'none'}")


async def run_agent(agent: Agent, url: str, *, max_ticks: int | None = None, stop: Callable[[], bool] | None = None,
                    connect: Callable[[str], Awaitable[Any]] | None = None,
                    policy: RetryPolicy | None = None) -> BoardLog:
    """Connect to the emulator at ``url`` and run ``agent`` until ``max_ticks``, ``stop()`` or cancellation; always
    shuts the agent down (workload stopped, clock cap restored). :func:`firmware_stubs.base.run_board` with the
    agent's capabilities in ``board.hello`` (a bad line is survived the same way)."""
    try:
        return await run_board(agent, url, max_ticks=max_ticks, stop=stop, connect=connect,
                               capabilities=agent.capabilities(), policy=policy)
    finally:
        agent.shutdown()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m firmware_stubs.agent",
        description="Put this Linux board in the loop of a flatsat emulator running in external mode: measure "
                    "power and temperature, run a workload, report, and obey power, throttle and radiation "
                    "effects. See docs/hardware.md.")
    p.add_argument("--url", help="board-plane URL of the emulator, e.g. zmq+tcp://192.168.1.10:5550 or "
                                 "serial:///dev/ttyTHS0?baud=921600 (required unless --list-sensors)")
    p.add_argument("--name", default=None, help="board name in board.hello (default: the host name)")
    p.add_argument("--report-hz", type=float, default=1.0, help="accel.report rate, per sim second (default 1)")
    p.add_argument("--sysfs-root", default="/sys", help="where sysfs is (default /sys; tests use a fake tree)")
    p.add_argument("--power-channel", metavar="NAME", help="report this power source only (a name from the table, "
                                                           "or a rail label such as VDD_IN)")
    p.add_argument("--temp-sensor", metavar="NAME", help="report this temperature source only (a name from the "
                                                         "table, or a thermal zone type such as gpu-thermal)")
    p.add_argument("--fallback-power-w", type=float, metavar="W",
                   help="when no power source exists, report an ESTIMATE: this many watts at full utilisation")
    p.add_argument("--fallback-idle-w", type=float, metavar="W",
                   help="the estimate at zero utilisation (default: --fallback-power-w)")
    p.add_argument("--no-nvidia-smi", action="store_true", help="do not query nvidia-smi")
    p.add_argument("--no-tegrastats", action="store_true", help="do not run tegrastats")
    w = p.add_argument_group("workload")
    w.add_argument("--workload-cmd", metavar="CMD", help="run this command (again and again) instead of the "
                                                         "built-in numpy loop")
    w.add_argument("--workload-cpus", type=int, metavar="N", help="CPUs the command's utilisation is relative to "
                                                                  "(default: all)")
    w.add_argument("--matrix-dim", type=int, default=256, help="numpy loop: matrix size (default 256)")
    w.add_argument("--batches", type=int, default=8, help="numpy loop: products per job (default 8)")
    w.add_argument("--result-dim", type=int, default=64, help="numpy loop: size of the checked result (default 64)")
    p.add_argument("--recover-rail", metavar="RAIL",
                   help="also act as the OBC for this PDU rail: eps.rail.reset when its limiter latches off "
                        "(e.g. payload; default: leave rails to the OBC)")
    w.add_argument("--watchdog-s", type=float, default=5.0,
                   help="wall seconds without progress before accel.reset (default 5; 0: never)")
    add_link_arguments(p)
    p.add_argument("--list-sensors", action="store_true", help="print what this board can measure, and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log every action")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m firmware_stubs.agent --url URL``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="[agent] %(message)s",
                        stream=sys.stderr)
    sensor_opts = SensorOptions(sysfs_root=args.sysfs_root, power_channel=args.power_channel,
                                temp_sensor=args.temp_sensor, fallback_power_w=args.fallback_power_w,
                                fallback_idle_w=args.fallback_idle_w, nvidia_smi=not args.no_nvidia_smi,
                                tegrastats=not args.no_tegrastats)
    try:
        sensors = Sensors(sensor_opts)
        try:
            sensors.discover()
        except ConfigError:
            if not args.list_sensors:
                raise
        print(sensors.table(), file=sys.stderr)
        if args.list_sensors:
            sensors.close()
            return 0
        if not args.url:
            print("agent: --url is required (or --list-sensors)", file=sys.stderr)
            sensors.close()
            return 2
        opts = AgentOptions(report_hz=args.report_hz, workload_cmd=args.workload_cmd, matrix_dim=args.matrix_dim,
                            batches=args.batches, result_dim=args.result_dim, workload_cpus=args.workload_cpus,
                            watchdog_s=args.watchdog_s, recover_rail=args.recover_rail, sensors=sensor_opts)
        if args.name:
            opts.name = args.name
        agent = Agent(opts, sensors=sensors)
    except (EmulatorError, ValueError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    try:
        run_until_signalled(run_agent(agent, args.url, policy=policy_from(args)))
    except EmulatorError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    print(f"agent: {agent.summary()}; link: {agent.log.link_summary()}", file=sys.stderr, flush=True)
    return 0


__all__ = ["Agent", "AgentOptions", "main", "run_agent"]
