"""The accelerator board's wire schemas: the payloads of its topics (``accel.*``, ``radiation.*``) and fault parameters.

Imported on first use (:class:`emulator.protocol.catalogue.SchemaRef`): :mod:`emulator.models.accelerator` names
them by reference, so a run that never validates an accelerator command or renders the docs never defines them.
Contract for boards: ``docs/protocol-accelerator.md``.
"""

from __future__ import annotations

from typing import Literal

from emulator.protocol.catalogue import Payload, field

MAX_JOB_ID = 2**31 - 1
MAX_SEED = 2**63 - 1

StateName = Literal["off", "booting", "idle", "busy", "throttled", "hung", "latched_up", "failed"]
ThrottleName = Literal["none", "software", "hardware"]
EventKind = Literal["seu", "mbu", "sdc", "sefi", "sel", "tid"]


class AccelStatus(Payload):
    state: StateName = field(doc="board state as its driver sees it")
    mode: Literal["model", "external"] = field(doc="model: simulated board; external: the board reports itself")
    level: str = field(doc="DVFS level set (from the config's table)")
    clock_mhz: float = field("MHz", "effective clock after slowdown cap and throttle duty; 0 when off, hung, latched "
                                    "up or failed; external mode: as the board last reported (0 before its first "
                                    "report since power-on or reset)", ge=0)
    throttle: ThrottleName = field(doc="thermal slowdown in force: none, software (clock cap), hardware (duty)")
    die_temp_degc: float = field("degC", "on-die sensor, 1 degC resolution")
    power_w: float = field("W", "board input power (its own power monitor)", ge=0)
    utilisation: float = field(doc="busy fraction over the last step, 0..1 (external mode: as reported once the "
                                   "board has reported)", ge=0, le=1)
    queue_len: int = field(doc="jobs queued or running", ge=0)
    running_job: int | None = field(doc="id of the job running, if any", default=None)
    jobs_done: int = field(doc="jobs finished with a result since start (external mode: as reported)", ge=0)
    jobs_failed: int = field(doc="jobs lost (error, reset, power, cancel) since start", ge=0)
    ecc_corrected: int = field(doc="single-bit HBM errors corrected since start", ge=0)
    ecc_uncorrected: int = field(doc="uncorrectable HBM errors since start", ge=0)
    rejected_commands: int = field(doc="accel.* commands refused since start", ge=0)


class DvfsSet(Payload):
    level: str = field(doc="DVFS level name from the board's table (the error lists the valid ones)",
                       min_length=1, max_length=32)


class JobSubmit(Payload):
    kind: Literal["inference", "training"] = field(doc="inference batches or training steps")
    size: int = field("units", "work units: batches (inference) or steps (training)", ge=1, le=10_000_000)
    id: int | None = field(doc="job id (default: next free id); must not be queued or running", default=None,
                           ge=0, le=MAX_JOB_ID)
    seed: int | None = field(doc="seed of the job's inputs (default: the id); same seed + kind = same result",
                             default=None, ge=0, le=MAX_SEED)


class JobCancel(Payload):
    id: int = field(doc="id of a queued or running job", ge=0, le=MAX_JOB_ID)


class JobVerdict(Payload):
    id: int = field(doc="id of a finished job", ge=0, le=MAX_JOB_ID)
    ok: bool = field(doc="the board's checker accepts (true) or rejects (false) the result")
    effect_id: int | None = field(doc="external mode: id of the accel.effect sdc the agent applied to this job",
                                  default=None, ge=0)


class ResetCmd(Payload):
    pass


class DvfsReply(Payload):
    level: str = field(doc="the level set")
    clock_mhz: float = field("MHz", "that level's clock (the effective clock may be lower while throttled)", ge=0)


class SubmitReply(Payload):
    id: int = field(doc="the job's id (yours, or the next free one)", ge=0)
    seed: int = field(doc="seed of its inputs", ge=0)
    queue_len: int = field(doc="jobs queued or running, this one included", ge=0)


class CancelReply(Payload):
    id: int = field(doc="the job cancelled", ge=0)
    queue_len: int = field(doc="jobs queued or running now", ge=0)


class VerdictReply(Payload):
    id: int = field(doc="the job", ge=0)
    ok: bool = field(doc="your verdict, echoed")
    matched: bool | None = field(doc="external mode only: `effect_id` named a pending `sdc` effect applied to "
                                     "this job (false: the verdict was recorded but matched no effect)",
                                 default=None)


class StateReply(Payload):
    state: StateName = field(doc="the board's state after the command")


class Report(Payload):
    power_w: float = field("W", "board input power as the board measures it", ge=0, le=100000)
    utilisation: float = field(doc="accelerator busy fraction, 0..1", ge=0, le=1)
    die_temp_degc: float | None = field("degC", "the real die temperature on the bench (recorded, not simulated)",
                                        default=None, ge=-60, le=200)
    clock_mhz: float | None = field("MHz", "the clock the board runs at", default=None, ge=0, le=10000)
    jobs_done: int | None = field(doc="jobs finished since the board started", default=None, ge=0)
    acked_effects: list[int] = field(doc="effect_ids of `reboot` / `mbu` effects the board has acted on",
                                     default_factory=list, max_length=256)


class JobDone(Payload):
    id: int = field(doc="job id", ge=0)
    kind: Literal["inference", "training"] = field(doc="job kind")
    size: int = field("units", "work units", ge=1)
    seed: int = field(doc="seed of the inputs", ge=0)
    ok: bool = field(doc="true: finished with a result; false: lost (see error)")
    error: str | None = field(doc="why it was lost: uecc, reset, power_loss, thermal_shutdown, latchup, reboot, "
                              "failed, cancelled", default=None)
    digest: str | None = field(doc="SHA-256 hex of the result (little-endian int32, row-major)", default=None)
    checksum: int | None = field(doc="sum of all result elements", default=None)
    values: list[int] = field(doc="the first 4 result elements", default_factory=list)
    duration_s: float = field("s", "submit to done", ge=0)


class PowerEvent(Payload):
    on: bool = field(doc="the board is powered (supply good and not shut down) or not")
    reason: str = field(doc="rail_on, rail_off, brownout, latchup, thermal_shutdown, failed, reset")


class ThrottleEvent(Payload):
    level: ThrottleName = field(doc="throttle now in force")
    clock_cap_mhz: float = field("MHz", "highest clock allowed", ge=0)
    duty: float = field(doc="fraction of cycles allowed (hardware throttle), 0..1", ge=0, le=1)
    die_temp_degc: float = field("degC", "simulated die temperature that caused it")


class StateEvent(Payload):
    state: StateName = field(doc="new state")
    previous: StateName = field(doc="previous state")
    reason: str = field(doc="why")


class ErrorEvent(Payload):
    kind: Literal["uecc"] = field(doc="uecc: uncorrectable HBM ECC error")
    chip: int = field(doc="chip index", ge=0)
    job_id: int | None = field(doc="the job lost with it, if one was running", default=None)


class EffectEvent(Payload):
    effect_id: int = field(doc="id to quote in accel.job.verdict (sdc) or accel.report.acked_effects", ge=0)
    kind: Literal["sdc", "hang", "reboot", "mbu"] = field(doc="what the board's agent must do (see docs)")
    chip: int = field(doc="chip index", ge=0)


class RadiationEventPayload(Payload):
    id: int = field(doc="event id", ge=0)
    t_ns: int = field("ns", "when it happened", ge=0)
    kind: EventKind = field(doc="seu, mbu, sdc, sefi, sel, tid")
    chip: int = field(doc="chip index (-1: whole board)")
    region: str = field(doc="hbm, logic, supply")
    job_id: int | None = field(doc="job affected", default=None)
    effect: str = field(doc="corrected, uncorrectable, uncorrectable_accumulated, corrupted, masked, hang, "
                        "reboot, latchup, degraded")


class RadiationHandled(Payload):
    id: int = field(doc="event id", ge=0)
    kind: EventKind = field(doc="event kind")
    how: str = field(doc="ecc, verdict, resubmitted, result_discarded, masked, nothing_lost, reset, power_cycle, "
                     "rail_cut, acked, none_required")
    t_ns: int = field("ns", "when", ge=0)


class ChipParam(Payload):
    chip: int = field(doc="chip index", ge=0, default=0)


class ScaleParam(Payload):
    factor: float = field(doc="multiplies every SEE rate (and the dose if radiation.scale_dose)", ge=0, le=1e9)
