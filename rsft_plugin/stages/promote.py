"""Stage 7 — promote: write the candidate as a new immutable version and flip the live pointer to it.

The running action server sees the pointer change, loads the version in the background and swaps it in with no
failed request (see models/live.py). Rollback is the same flip, to an older version.
"""

from __future__ import annotations

from typing import Any

from ..models.base import ResponsePolicy, VersionInfo
from ..models.registry import Registry


def promote(registry: Registry, candidate: ResponsePolicy, parent: str, round_id: int,
            eval_numbers: dict[str, Any], notes: str) -> VersionInfo:
    """Publish `candidate` (parent = the live version it was trained from) and make it live."""
    info = registry.publish(candidate, parent=parent, round_id=round_id, eval_numbers=eval_numbers, notes=notes)
    registry.set_live(info.name, f"round {round_id}")
    return info
