"""argparse types of flatsat's commands (emulator's and hil's): durations, seeds, numbers that must be finite and
not negative. A bad value is an argument error naming the flag (argparse prints it, exit 2)."""

from __future__ import annotations

import argparse
import math

from emulator.clock import parse_duration_s


def duration_arg(text: str) -> float:
    """argparse type for a sim duration ('1d', '90m', '3600')."""
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds_arg(text: str) -> float:
    """argparse type for a wall time or size that may be 0 and not below (a finite number)."""
    return _number_arg(text, allow_zero=True)


def positive_arg(text: str) -> float:
    """argparse type for a finite number above 0 (a speed, a timeout that must run out)."""
    return _number_arg(text, allow_zero=False)


def seed_arg(text: str) -> int:
    """argparse type for a seed: a whole number, 0 or more (below 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number from 0 to 2**63 - 1")
    return value


def _number_arg(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"{text}: give a number {'>= 0' if allow_zero else '> 0'}")
    return value
