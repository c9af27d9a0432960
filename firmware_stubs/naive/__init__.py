"""The naive payload controller: runs flat out and ignores the environment.

It switches its rail on, picks the highest DVFS level and keeps the job queue full, whatever the
battery, the temperature or the board's health. It never checks a result, never resets a hung
board and never power-cycles after a latch-up. The standard scenarios must fail it, each for
its own reason; that proves they can fail.
"""

from __future__ import annotations

from firmware_stubs.base import BoardClient, Controller


class NaiveController(Controller):
    """Runs flat out and ignores the environment (the scenarios must catch it)."""

    name = "naive"
    version = "1.0.0"
    period_s = 20.0
    rail = "payload"

    def __init__(self) -> None:
        super().__init__()
        self.seed = 1

    async def on_start(self, board: BoardClient) -> None:
        await board.request("eps.rail.set", {"rail": self.rail, "on": True})

    async def on_tick(self, board: BoardClient) -> None:
        board.events()  # read and ignored
        acc = board.latest.get("accel.status")
        if acc is None or acc["state"] not in ("idle", "busy", "throttled"):
            return
        if acc["level"] != "max":
            await board.request("accel.dvfs.set", {"level": "max"}, check=False)
        for _ in range(4 - acc["queue_len"]):
            await board.request("accel.job.submit", {"kind": "inference", "size": 1000, "seed": self.seed},
                                check=False)
            self.seed += 1
