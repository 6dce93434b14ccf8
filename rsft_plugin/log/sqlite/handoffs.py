"""Hand-offs to a person: the bot records them, operators take and close them in the console (SQLite)."""

from __future__ import annotations

from collections.abc import Callable

from ...errors import Conflict
from ..records import CONTACT_STATES, HANDOFF_REASONS, HANDOFF_STATUSES, Handoff, VersionHandoffs, refused_handoff_move
from .base import SqliteBase, utc_now


# status -> the statuses it may move to
def _handoff(row: dict) -> Handoff:
    return Handoff.from_row(row)


class SqliteHandoffs(SqliteBase):
    def open_handoff(self, sender_id: str, reason: str, model_version: str | None) -> Handoff:
        if reason not in HANDOFF_REASONS:
            raise ValueError(f"a hand-off's reason is one of {list(HANDOFF_REASONS)}, not {reason!r}")
        with self._transaction():
            handoff_id = self.db.execute(
                "INSERT INTO handoffs (sender_id, reason, status, created_at, model_version, contact_state) "
                "VALUES (?, ?, 'open', ?, ?, 'pending')", [sender_id, reason, utc_now(), model_version]).lastrowid
        return self.handoff(handoff_id)  # type: ignore[return-value]

    def set_handoff_contact(self, handoff_id: int, contact: str | None) -> Handoff:
        state = CONTACT_STATES[1] if contact is not None else CONTACT_STATES[2]
        with self._transaction():
            updated = self.db.execute("UPDATE handoffs SET contact = ?, contact_state = ?, contact_redacted = 0 "
                                      "WHERE id = ?", [contact, state, handoff_id]).rowcount
        if not updated:
            raise KeyError(f"no hand-off {handoff_id}")
        return self.handoff(handoff_id)  # type: ignore[return-value]

    def move_handoff(self, handoff_id: int, status: str, by: str) -> Handoff:
        if status not in HANDOFF_STATUSES or status == "open":
            raise ValueError(f"a hand-off can be moved to taken or closed, not {status!r}")
        with self._transaction():
            row = self.db.execute("SELECT status FROM handoffs WHERE id = ?", [handoff_id]).fetchone()
            if row is None:
                raise KeyError(f"no hand-off {handoff_id}")
            refused = refused_handoff_move(handoff_id, row[0], status)
            if refused:
                raise Conflict(refused)
            self.db.execute(f"UPDATE handoffs SET status = ?, {status}_by = ?, {status}_at = ? WHERE id = ?",
                            [status, by, utc_now(), handoff_id])
        return self.handoff(handoff_id)  # type: ignore[return-value]

    def handoff(self, handoff_id: int) -> Handoff | None:
        rows = self._rows("SELECT * FROM handoffs WHERE id = ?", [handoff_id])
        return _handoff(rows[0]) if rows else None

    def handoffs(self, status: str | None = None, sender_id: str | None = None, limit: int = 100) -> list[Handoff]:
        if status is not None and status not in HANDOFF_STATUSES:
            raise ValueError(f"a hand-off's status is one of {list(HANDOFF_STATUSES)}, not {status!r}")
        where, params = [], []
        for column, value in (("status", status), ("sender_id", sender_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [_handoff(r) for r in self._rows(f"SELECT * FROM handoffs {clause} ORDER BY id DESC LIMIT ?",
                                                [*params, limit])]

    def handoff_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(HANDOFF_STATUSES, 0)
        for row in self._rows("SELECT status, count(*) AS n FROM handoffs GROUP BY status"):
            counts[row["status"]] = row["n"]
        return counts

    def handoffs_by_version(self, unanswered_key: str) -> list[VersionHandoffs]:
        rows = self._rows("""
            SELECT v.model_version,
                   (SELECT count(*) FROM handoffs h WHERE h.model_version = v.model_version) AS handoffs,
                   (SELECT count(*) FROM turns t WHERE t.model_version = v.model_version
                      AND coalesce(t.reply_key, '') != ?) AS answered_turns
            FROM (SELECT model_version FROM turns UNION SELECT model_version FROM handoffs
                  WHERE model_version IS NOT NULL) v
            ORDER BY v.model_version""", [unanswered_key])
        return [VersionHandoffs.from_row(r) for r in rows]

    def redact_handoff_contacts_older_than(self, cutoff: str, redact: Callable[[str], str]) -> int:
        with self._transaction():
            rows = list(self.db.execute("SELECT id, contact FROM handoffs WHERE created_at < ? AND contact IS NOT "
                                        "NULL AND contact_redacted = 0", [cutoff]))
            for handoff_id, contact in rows:
                self.db.execute("UPDATE handoffs SET contact = ?, contact_redacted = 1 WHERE id = ?",
                                [redact(contact), handoff_id])
        return len(rows)
