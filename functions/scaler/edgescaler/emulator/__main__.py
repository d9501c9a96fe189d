"""``python -m edgescaler.emulator``: see :mod:`edgescaler.emulator.cli`."""

from __future__ import annotations

import sys

from edgescaler.emulator.cli import main

sys.exit(main())
