"""The reference payload policy's numbers, in one place.

Read by the Python reference board (``firmware_stubs.reference``), by the cluster's built-in policy of unbound
members (``emulator.models.cluster.PolicyConfig``'s defaults) and, as the generated header
``firmware_stubs/c/fsb_policy.h`` (``python -m firmware_stubs.policy_header``, kept in step by a test), by the C
stub. A leaf module: it imports nothing of flatsat, so boards and models may both read it.

The rules that use these numbers (docs/hil.md, docs/models-cluster.md), every ``period_s``:

- energy: payload rail off below ``soc_off``, back on at ``soc_on`` (in sun); lowest DVFS level and no new work
  below ``soc_low``, or in eclipse below ``soc_eclipse``;
- heat: one DVFS level down above ``temp_high_degc``, one up below ``temp_low_degc`` (not to the top level, which
  buys little throughput for a lot of heat); after a thermal shutdown, reset once the die is below
  ``temp_restart_degc``;
- work: keep ``queue_target`` jobs of ``job_size`` batches queued while energy and heat allow;
- faults: reset a hung board, reset a latched limiter, power-cycle the rail after a latch-up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferencePolicy:
    """The reference board's policy numbers (one frozen instance: :data:`REFERENCE`)."""

    #: control period, sim seconds (and the ``board.step`` size in lockstep): a hang, a latch-up or a latched rail
    #: is handled within 10 s of sim time, and two queued ~12 s jobs outlast a period
    period_s: float = 10.0
    #: the payload's PDU rail
    rail: str = "payload"
    #: DVFS levels, lowest first, until the board's reply names its own; the board starts at ``start_level``
    levels: tuple[str, ...] = ("low", "mid", "high", "max")
    start_level: str = "high"
    #: state of charge: rail off below soc_off, back on at soc_on
    soc_off: float = 0.30
    soc_on: float = 0.55
    #: state of charge: lowest DVFS level and no new work below soc_low, or in eclipse below soc_eclipse
    soc_low: float = 0.45
    soc_eclipse: float = 0.70
    #: die temperature: one level down above temp_high_degc, one up below temp_low_degc (under the 87 degC software
    #: slowdown of the reference accelerator); reset after a thermal shutdown below temp_restart_degc
    temp_high_degc: float = 80.0
    temp_low_degc: float = 70.0
    temp_restart_degc: float = 75.0
    #: inference jobs kept queued, and batches per job (~12 s at 4 x 1500 MHz: two jobs outlast a period)
    queue_target: int = 2
    job_size: int = 1000
    #: bus voltage: the C stub also sheds below bus_off_v and comes back at bus_on_v: 0.4 V above the 8S suncatcher-proto pack's own payload shed at 28.8 V (a margin for
    #: the sag within one period), back on 1 V higher. A board on another bus sets its own (--bus-off-v/--bus-on-v);
    #: the Python board and the fleet policy read the SoC only
    bus_off_v: float = 29.2
    bus_on_v: float = 30.2


#: the one reference policy
REFERENCE = ReferencePolicy()

__all__ = ["REFERENCE", "ReferencePolicy"]
