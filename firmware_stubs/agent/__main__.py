"""``python -m firmware_stubs.agent --url URL``: the board agent (see docs/hardware.md)."""

from __future__ import annotations

import sys

from firmware_stubs.agent import main

sys.exit(main())
