"""``python -m firmware_stubs.naive --url URL``."""

from __future__ import annotations

import sys

from firmware_stubs.base import main
from firmware_stubs.naive import NaiveController

sys.exit(main(NaiveController))
