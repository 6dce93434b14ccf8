"""Crash points for the kill -9 tests: `checkpoint(name)` kills the process with SIGKILL when RSFT_CRASH_AT=name.

This is how the tests prove that a round killed at any moment — mid-sampling, mid-training, half-way through
writing a version, just before the pointer flips — leaves the live model serving and nothing half-written
visible. Without the variable a checkpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "RSFT_CRASH_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
