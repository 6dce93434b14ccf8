"""Hand-offs to a person: the bot records them, operators take and close them in the console (PostgreSQL).

A move re-checks the row's status under a row lock (FOR UPDATE), so two operators taking the same hand-off at once
get one success and one Conflict.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import Conflict
from ..records import CONTACT_STATES, HANDOFF_REASONS, HANDOFF_STATUSES, Handoff, VersionHandoffs, refused_handoff_move
from .base import PostgresBase, utc_now


# status -> the statuses it may move to
class PostgresHandoffs(PostgresBase):
    def open_handoff(self, sender_id: str, reason: str, model_version: str | None) -> Handoff:
        if reason not in HANDOFF_REASONS:
            raise ValueError(f"a hand-off's reason is one of {list(HANDOFF_REASONS)}, not {reason!r}")
        with self._transaction() as cursor:
            row = cursor.execute(
                "INSERT INTO handoffs (sender_id, reason, status, created_at, model_version, contact_state) "
                "VALUES (%s, %s, 'open', %s, %s, 'pending') RETURNING *",
                [sender_id, reason, utc_now(), model_version]).fetchone()
        return Handoff.from_row(row)

    def set_handoff_contact(self, handoff_id: int, contact: str | None) -> Handoff:
        state = CONTACT_STATES[1] if contact is not None else CONTACT_STATES[2]
        with self._transaction() as cursor:
            row = cursor.execute("UPDATE handoffs SET contact = %s, contact_state = %s, contact_redacted = 0 "
                                 "WHERE id = %s RETURNING *", [contact, state, handoff_id]).fetchone()
        if row is None:
            raise KeyError(f"no hand-off {handoff_id}")
        return Handoff.from_row(row)

    def move_handoff(self, handoff_id: int, status: str, by: str) -> Handoff:
        if status not in HANDOFF_STATUSES or status == "open":
            raise ValueError(f"a hand-off can be moved to taken or closed, not {status!r}")
        with self._transaction() as cursor:
            current = cursor.execute("SELECT status FROM handoffs WHERE id = %s FOR UPDATE", [handoff_id]).fetchone()
            if current is None:
                raise KeyError(f"no hand-off {handoff_id}")
            refused = refused_handoff_move(handoff_id, current["status"], status)
            if refused:
                raise Conflict(refused)
            row = cursor.execute(f"UPDATE handoffs SET status = %s, {status}_by = %s, {status}_at = %s "
                                 "WHERE id = %s RETURNING *", [status, by, utc_now(), handoff_id]).fetchone()
        return Handoff.from_row(row)

    def handoff(self, handoff_id: int) -> Handoff | None:
        rows = self._rows("SELECT * FROM handoffs WHERE id = %s", [handoff_id])
        return Handoff.from_row(rows[0]) if rows else None

    def handoffs(self, status: str | None = None, sender_id: str | None = None, limit: int = 100) -> list[Handoff]:
        if status is not None and status not in HANDOFF_STATUSES:
            raise ValueError(f"a hand-off's status is one of {list(HANDOFF_STATUSES)}, not {status!r}")
        where, params = [], []
        for column, value in (("status", status), ("sender_id", sender_id)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [Handoff.from_row(r) for r in self._rows(
            f"SELECT * FROM handoffs {clause} ORDER BY id DESC LIMIT %s", [*params, limit])]

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
                      AND coalesce(t.reply_key, '') != %s) AS answered_turns
            FROM (SELECT model_version FROM turns UNION SELECT model_version FROM handoffs
                  WHERE model_version IS NOT NULL) v
            ORDER BY v.model_version COLLATE "C"
            """, [unanswered_key])
        return [VersionHandoffs.from_row(r) for r in rows]

    def redact_handoff_contacts_older_than(self, cutoff: str, redact: Callable[[str], str]) -> int:
        with self._transaction() as cursor:
            rows = cursor.execute("SELECT id, contact FROM handoffs WHERE created_at < %s AND contact IS NOT NULL "
                                  "AND contact_redacted = 0 FOR UPDATE", [cutoff]).fetchall()
            for row in rows:
                cursor.execute("UPDATE handoffs SET contact = %s, contact_redacted = 1 WHERE id = %s",
                               [redact(row["contact"]), row["id"]])
        return len(rows)
