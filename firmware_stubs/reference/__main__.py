"""``python -m firmware_stubs.reference --url URL``."""

from __future__ import annotations

import sys

from firmware_stubs.base import main
from firmware_stubs.reference import ReferenceController

sys.exit(main(ReferenceController))
