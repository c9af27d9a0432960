"""A toy board for the Lamp model (tests/toy_model.py): duty-cycles the lamp; can crash or hang on purpose.

Run as a separate process, like real firmware::

    python tests/hil/toy_board.py --url zmq+tcp://127.0.0.1:5550 [--crash-at 120] [--hang-at 120]

Every control period it wants the lamp on for ``--on-ticks`` periods, then off for
``--off-ticks``, and sends ``lamp.set`` only when the lamp's telemetry disagrees. ``--crash-at S``
exits with code 3 at the first tick at or after S seconds of sim time (a firmware crash);
``--hang-at S`` stops answering there (a hung board that never steps again).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from firmware_stubs.base import (
    BoardClient,
    Controller,
    add_link_arguments,
    policy_from,
    run_board,
    run_until_signalled,
)

NS_PER_S = 1_000_000_000
CRASH_EXIT_CODE = 3


class ToyLampBoard(Controller):
    """Duty-cycles the toy lamp."""

    name = "toy-lamp"
    version = "1.0"
    period_s = 10.0

    def __init__(self, on_ticks: int = 3, off_ticks: int = 2, crash_at_s: float | None = None,
                 hang_at_s: float | None = None) -> None:
        super().__init__()
        self.on_ticks = on_ticks
        self.off_ticks = off_ticks
        self.crash_at_s = crash_at_s
        self.hang_at_s = hang_at_s
        self.ticks = 0

    async def on_tick(self, board: BoardClient) -> None:
        t_s = board.t_ns / NS_PER_S
        if self.crash_at_s is not None and t_s >= self.crash_at_s:
            print(f"toy-lamp: crashing on purpose at t={t_s:g} s", file=sys.stderr, flush=True)
            os._exit(CRASH_EXIT_CODE)
        if self.hang_at_s is not None and t_s >= self.hang_at_s:
            print(f"toy-lamp: hanging on purpose at t={t_s:g} s", file=sys.stderr, flush=True)
            await asyncio.Event().wait()
        want_on = self.ticks % (self.on_ticks + self.off_ticks) < self.on_ticks
        self.ticks += 1
        if board.latest.get("lamp.telemetry", {}).get("on") != want_on:
            await board.request("lamp.set", {"on": want_on, "power_w": 10.0})
            self.log.add(board.t_ns, f"lamp {'on' if want_on else 'off'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="board-plane URL of the emulator")
    parser.add_argument("--period", type=float, default=ToyLampBoard.period_s, help="control period, sim s")
    parser.add_argument("--on-ticks", type=int, default=3)
    parser.add_argument("--off-ticks", type=int, default=2)
    parser.add_argument("--crash-at", type=float, default=None, help="exit with code 3 at this sim time (s)")
    parser.add_argument("--hang-at", type=float, default=None, help="stop stepping at this sim time (s)")
    add_link_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[toy-lamp] %(message)s", stream=sys.stderr)
    board = ToyLampBoard(args.on_ticks, args.off_ticks, args.crash_at, args.hang_at)
    board.period_s = args.period
    run_until_signalled(run_board(board, args.url, policy=policy_from(args)))
    result = board.log
    print(f"toy-lamp: {len(result.actions)} actions, {len(result.errors)} refused; link: {result.link_summary()}",
          file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
