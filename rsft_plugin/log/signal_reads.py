"""The read of choices and implicit signals both SQL backends share (written with `?`; see turn_reads.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .records import Signal
from .turn_reads import newest_rows

SIGNALS_WITH_TURNS = (
    "SELECT s.id, s.turn_id, s.sender_id, s.kind, s.reply_key, s.created_at, t.user_text, t.model_version, "
    "t.reply_key AS served_key, t.answer_id AS served_answer_id FROM signals s JOIN turns t ON t.id = s.turn_id"
)


class SignalReads:
    _read: Callable[..., list[dict[str, Any]]]  # TurnReads._read: `?` placeholders run with the backend's

    def signals(self, *, since: str | None = None, until: str | None = None, model_version: str | None = None,
                sender_id: str | None = None, exclude_turn_ids: set[str] | None = None,
                newest: int | None = None) -> list[Signal]:
        conditions, params = [], []
        for clause, value in (("s.created_at >= ?", since), ("s.created_at < ?", until),
                              ("t.model_version = ?", model_version), ("s.sender_id = ?", sender_id)):
            if value is not None:
                conditions.append(clause)
                params.append(value)
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        excluded = exclude_turn_ids or set()
        if newest is not None:
            rows = newest_rows(self._read, f"{SIGNALS_WITH_TURNS} {where} ORDER BY s.created_at DESC, s.id DESC",
                               params, newest, lambda row: row["turn_id"] not in excluded, len(excluded))
        else:
            rows = self._read(f"{SIGNALS_WITH_TURNS} {where} ORDER BY s.created_at, s.id", params)
        return [Signal.from_row(r) for r in rows if r["turn_id"] not in excluded]
