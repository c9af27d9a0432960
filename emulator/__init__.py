"""flatsat: a hardware-in-the-loop emulator for AI-compute satellites."""

from __future__ import annotations

__version__ = "0.1.0"
