"""Turns, ratings and the inbox's queries over them (SQLite)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from ...errors import RatingRefused, SignalRefused
from ..records import ConversationSummary, RatingRecord, Signal, Turn, TurnFacets, TurnRecord, refused_signal
from ..signal_reads import SignalReads
from ..turn_reads import TO_LABEL_SQL, TURNS_WITH_RATINGS, TurnReads
from .base import SqliteBase, utc_now


def _turn(row: dict[str, Any]) -> Turn:
    top_k = json.loads(row["top_k"]) if row.get("top_k") else []
    writing = json.loads(row["writing"]) if row.get("writing") else None
    return Turn.from_row(row, top_k=top_k, redacted=bool(row.get("redacted")), writing=writing)


class SqliteConversations(TurnReads, SignalReads, SqliteBase):
    _PLACEHOLDER, _TIE = "?", "t.rowid"
    _turn = staticmethod(_turn)

    def log_turn(self, turn: TurnRecord) -> str:
        turn_id = uuid.uuid4().hex
        row = {"id": turn_id, **turn.to_dict(), "top_k": json.dumps(turn.top_k), "created_at": utc_now(),
               "reply_key": turn.reply_key or turn.answer_id,
               "writing": json.dumps(turn.writing) if turn.writing is not None else None}
        with self._transaction():
            self.db["turns"].insert(row)
        return turn_id

    def rate(self, turn_id: str, sender_id: str, score: int, max_per_minute: int | None = None) -> RatingRecord:
        now = utc_now()
        refusal: RatingRefused | None = None
        replaced = False
        with self._transaction():
            # The attempt is recorded even when the rating is refused, so the transaction must commit: the
            # refusal is raised after it.
            if max_per_minute is not None and self._attempts_this_minute(sender_id, now) > max_per_minute:
                refusal = RatingRefused("that is a lot of ratings in one minute; please wait a moment")
            else:
                refusal = self._rating_refusal(turn_id, sender_id, score)
            if refusal is None:
                replaced = self.db.execute("SELECT 1 FROM ratings WHERE turn_id = ?",
                                           [turn_id]).fetchone() is not None
                self.db.execute(
                    "INSERT INTO ratings (turn_id, sender_id, score, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(turn_id) DO UPDATE SET score = excluded.score, updated_at = excluded.updated_at",
                    [turn_id, sender_id, score, now, now],
                )
        if refusal is not None:
            raise refusal
        return RatingRecord(turn_id, sender_id, score, now, replaced)

    def record_signal(self, turn_id: str, sender_id: str, kind: str, reply_key: str | None,
                      max_per_minute: int | None = None) -> Signal:
        now = utc_now()
        refusal: str | None = None
        with self._transaction():  # the attempt counts even when refused, so this commits; the refusal comes after
            if max_per_minute is not None and self._attempts_this_minute(sender_id, now) > max_per_minute:
                refusal = "that is a lot of clicks in one minute; please wait a moment"
            else:
                owner = self.db.execute("SELECT sender_id FROM turns WHERE id = ?", [turn_id]).fetchone()
                earlier = {row[0] for row in self.db.execute("SELECT kind FROM signals WHERE turn_id = ?", [turn_id])}
                refusal = refused_signal(kind, reply_key, owner[0] if owner else None, sender_id, earlier)
            if refusal is None:
                signal_id = self.db.execute(
                    "INSERT INTO signals (turn_id, sender_id, kind, reply_key, created_at) VALUES (?, ?, ?, ?, ?)",
                    [turn_id, sender_id, kind, reply_key, now]).lastrowid
        if refusal is not None:
            raise SignalRefused(refusal)
        return next(s for s in self.signals(since=now, sender_id=sender_id) if s.id == signal_id)

    def _attempts_this_minute(self, sender_id: str, now: str) -> int:
        """Record one rating attempt by `sender_id` (pruning attempts older than a minute); count theirs in it."""
        minute_ago = (datetime.fromisoformat(now) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
        self.db.execute("DELETE FROM rating_attempts WHERE at <= ?", [minute_ago])
        self.db.execute("INSERT INTO rating_attempts (sender_id, at) VALUES (?, ?)", [sender_id, now])
        return self.db.execute("SELECT count(*) FROM rating_attempts WHERE sender_id = ? AND at > ?",
                               [sender_id, minute_ago]).fetchone()[0]

    def _rating_refusal(self, turn_id: str, sender_id: str, score: int) -> RatingRefused | None:
        if score not in (0, 1):
            return RatingRefused(f"a rating is 0 or 1, not {score!r}")
        owner = self.db.execute("SELECT sender_id FROM turns WHERE id = ?", [turn_id]).fetchone()
        if owner is None:
            return RatingRefused("there is no answer with that id")
        if owner[0] != sender_id:
            return RatingRefused("that answer was given in another conversation")
        return None

    def conversations(self, *, rating: str = "any", score_below: float | None = None, topic: str | None = None,
                      since: str | None = None, until: str | None = None, version: str | None = None,
                      text: str | None = None, sort: str = "newest", limit: int = 50,
                      offset: int = 0) -> tuple[int, list[ConversationSummary]]:
        """Conversations (one per sender) having at least one turn that matches every given filter.

        Args:
            rating: any | down | up | rated | unrated (of the matching turn) | to_label (missed, not labelled yet:
                turn_reads.TO_LABEL_SQL).
            score_below: the matching turn's answer score (cosine) is below this.
            topic / version: the matching turn was answered with this topic / by this model version.
            since / until: ISO timestamps or dates; the matching turn was logged at or after `since`, before `until`.
            text: case-insensitive substring of the question or the answer, or the exact sender id.
            sort: newest (last turn first) | down_first (conversations with a 👎 first, then newest) |
                lowest_score (lowest answer score first).
        """
        conditions, params = [], []
        rating_sql = {"any": None, "down": "r.score = 0", "up": "r.score = 1", "rated": "r.score IS NOT NULL",
                      "unrated": "r.score IS NULL", "to_label": TO_LABEL_SQL}
        if rating not in rating_sql:
            raise ValueError(f"rating must be one of {sorted(rating_sql)}")
        if rating_sql[rating]:
            conditions.append(rating_sql[rating])
        for clause, value in (("t.score < ?", score_below), ("t.answer_topic = ?", topic),
                              ("t.created_at >= ?", since), ("t.created_at < ?", until),
                              ("t.model_version = ?", version)):
            if value is not None:
                conditions.append(clause)
                params.append(value)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append("(t.user_text LIKE ? ESCAPE '\\' OR t.answer_text LIKE ? ESCAPE '\\' "
                              "OR t.sender_id = ?)")
            params += [pattern, pattern, text]
        order = {"newest": "last_at DESC", "down_first": "(down > 0) DESC, last_at DESC",
                 "lowest_score": "min_score ASC, last_at DESC"}
        if sort not in order:
            raise ValueError(f"sort must be one of {sorted(order)}")
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        matched = (f"SELECT t.sender_id, max(t.created_at) AS hit_at, count(*) AS hits FROM turns t "
                   f"LEFT JOIN ratings r ON r.turn_id = t.id {where} GROUP BY t.sender_id")
        total = self._value(f"SELECT count(*) FROM ({matched})", params)
        rows = self._rows(f"""
            WITH matched AS ({matched})
            SELECT t.sender_id, count(*) AS turns, min(t.created_at) AS first_at, max(t.created_at) AS last_at,
                   coalesce(sum(r.score = 0), 0) AS down, coalesce(sum(r.score = 1), 0) AS up,
                   min(t.score) AS min_score, group_concat(DISTINCT t.model_version) AS versions,
                   m.hits AS matching_turns,
                   (SELECT h.user_text FROM turns h WHERE h.sender_id = t.sender_id AND h.created_at = m.hit_at
                    ORDER BY h.rowid DESC LIMIT 1) AS question
            FROM turns t JOIN matched m ON m.sender_id = t.sender_id LEFT JOIN ratings r ON r.turn_id = t.id
            GROUP BY t.sender_id ORDER BY {order[sort]} LIMIT ? OFFSET ?""", [*params, limit, offset])
        return total, [ConversationSummary.from_row(
            row, versions=sorted(set((row["versions"] or "").split(",")) - {""})) for row in rows]

    def conversation(self, sender_id: str) -> list[Turn]:
        return [_turn(r) for r in self._rows(
            f"{TURNS_WITH_RATINGS} WHERE t.sender_id = ? ORDER BY t.created_at, t.rowid", [sender_id])]

    def turn_facets(self) -> TurnFacets:
        with self._lock:
            topics = [r[0] for r in self.db.execute(
                "SELECT DISTINCT answer_topic FROM turns WHERE answer_topic IS NOT NULL ORDER BY 1")]
            versions = [r[0] for r in self.db.execute("SELECT DISTINCT model_version FROM turns ORDER BY 1")]
            first, last, senders = self.db.execute(
                "SELECT min(created_at), max(created_at), count(DISTINCT sender_id) FROM turns").fetchone()
        return TurnFacets(topics, versions, first, last, senders)

    def iter_turns(self, batch: int = 500) -> Iterator[Turn]:
        last = 0
        while True:
            rows = self._rows(f"{TURNS_WITH_RATINGS.replace('SELECT t.*', 'SELECT t.rowid AS _rowid, t.*')} "
                              "WHERE t.rowid > ? ORDER BY t.rowid LIMIT ?", [last, batch])
            if not rows:
                return
            last = rows[-1]["_rowid"]
            for row in rows:
                yield _turn(row)
