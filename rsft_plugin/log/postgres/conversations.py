"""Turns, ratings and the inbox's queries over them (PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Json

from ...errors import RatingRefused, SignalRefused
from ..records import ConversationSummary, RatingRecord, Signal, Turn, TurnFacets, TurnRecord, refused_signal
from ..signal_reads import SignalReads
from ..turn_reads import TO_LABEL_SQL, TURNS_WITH_RATINGS, TurnReads
from .base import LOCK_PRUNE_ATTEMPTS, PostgresBase, utc_now

_RATING_SQL = {"any": None, "down": "r.score = 0", "up": "r.score = 1", "rated": "r.score IS NOT NULL",
               "unrated": "r.score IS NULL", "to_label": TO_LABEL_SQL}
# SQLite sorts NULL first in ascending order; PostgreSQL last unless told. Ties end with the sender id so that
# pages (limit/offset) never repeat or skip a conversation.
_ORDER = {"newest": "last_at DESC, sender_id", "down_first": "(down > 0) DESC, last_at DESC, sender_id",
          "lowest_score": "min_score ASC NULLS FIRST, last_at DESC, sender_id"}


def _turn(row: dict[str, Any]) -> Turn:
    return Turn.from_row(row, top_k=row.get("top_k") or [], redacted=bool(row.get("redacted")),
                         writing=row.get("writing"))


class PostgresConversations(TurnReads, SignalReads, PostgresBase):
    _PLACEHOLDER, _TIE = "%s", "t.seq"
    _turn = staticmethod(_turn)

    def log_turn(self, turn: TurnRecord) -> str:
        turn_id = uuid.uuid4().hex
        row = {"id": turn_id, **turn.to_dict(), "top_k": Json(turn.top_k), "created_at": utc_now(),
               "reply_key": turn.reply_key or turn.answer_id,
               "writing": Json(turn.writing) if turn.writing is not None else None}
        with self._transaction() as cursor:
            cursor.execute(f"INSERT INTO turns ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                           list(row.values()))
        return turn_id

    def rate(self, turn_id: str, sender_id: str, score: int, max_per_minute: int | None = None) -> RatingRecord:
        now = utc_now()
        refusal: RatingRefused | None = None
        replaced = False
        with self._transaction() as cursor:
            # One sender's rating calls run one at a time (the cap counts them; only they may rate their turns).
            # The attempt is recorded even when the rating is refused, so the transaction commits: the refusal is
            # raised after it.
            self._lock_sender(cursor, sender_id)
            if max_per_minute is not None and self._attempts_this_minute(cursor, sender_id, now) > max_per_minute:
                refusal = RatingRefused("that is a lot of ratings in one minute; please wait a moment")
            else:
                refusal = self._rating_refusal(cursor, turn_id, sender_id, score)
            if refusal is None:
                replaced = cursor.execute("SELECT 1 FROM ratings WHERE turn_id = %s", [turn_id]).fetchone() is not None
                cursor.execute(
                    "INSERT INTO ratings (turn_id, sender_id, score, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (turn_id) DO UPDATE SET score = excluded.score, updated_at = excluded.updated_at",
                    [turn_id, sender_id, score, now, now])
        if refusal is not None:
            raise refusal
        return RatingRecord(turn_id, sender_id, score, now, replaced)

    def record_signal(self, turn_id: str, sender_id: str, kind: str, reply_key: str | None,
                      max_per_minute: int | None = None) -> Signal:
        now = utc_now()
        refusal: str | None = None
        with self._transaction() as cursor:
            # The sender's lock: their clicks run one at a time, so "already answered" and the cap hold across
            # processes. The attempt counts even when refused, so this commits; the refusal is raised after it.
            self._lock_sender(cursor, sender_id)
            if max_per_minute is not None and self._attempts_this_minute(cursor, sender_id, now) > max_per_minute:
                refusal = "that is a lot of clicks in one minute; please wait a moment"
            else:
                owner = cursor.execute("SELECT sender_id FROM turns WHERE id = %s", [turn_id]).fetchone()
                earlier = {row["kind"] for row in cursor.execute("SELECT kind FROM signals WHERE turn_id = %s",
                                                                 [turn_id])}
                refusal = refused_signal(kind, reply_key, owner["sender_id"] if owner else None, sender_id, earlier)
            if refusal is None:
                signal_id = cursor.execute(
                    "INSERT INTO signals (turn_id, sender_id, kind, reply_key, created_at) "
                    "VALUES (%s, %s, %s, %s, %s) RETURNING id", [turn_id, sender_id, kind, reply_key, now]
                ).fetchone()["id"]
        if refusal is not None:
            raise SignalRefused(refusal)
        return next(s for s in self.signals(since=now, sender_id=sender_id) if s.id == signal_id)

    @staticmethod
    def _attempts_this_minute(cursor: psycopg.Cursor, sender_id: str, now: str) -> int:
        """Record one rating attempt by `sender_id`; count theirs in the last minute. Attempts older than a minute
        are pruned by whichever process gets the pruning lock (the others skip it rather than wait)."""
        minute_ago = (datetime.fromisoformat(now) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
        if cursor.execute("SELECT pg_try_advisory_xact_lock(%s, 0) AS got",
                          [LOCK_PRUNE_ATTEMPTS]).fetchone()["got"]:
            cursor.execute("DELETE FROM rating_attempts WHERE at <= %s", [minute_ago])
        cursor.execute("INSERT INTO rating_attempts (sender_id, at) VALUES (%s, %s)", [sender_id, now])
        return cursor.execute("SELECT count(*) AS n FROM rating_attempts WHERE sender_id = %s AND at > %s",
                              [sender_id, minute_ago]).fetchone()["n"]

    @staticmethod
    def _rating_refusal(cursor: psycopg.Cursor, turn_id: str, sender_id: str, score: int) -> RatingRefused | None:
        if score not in (0, 1):
            return RatingRefused(f"a rating is 0 or 1, not {score!r}")
        owner = cursor.execute("SELECT sender_id FROM turns WHERE id = %s", [turn_id]).fetchone()
        if owner is None:
            return RatingRefused("there is no answer with that id")
        if owner["sender_id"] != sender_id:
            return RatingRefused("that answer was given in another conversation")
        return None

    def conversations(self, *, rating: str = "any", score_below: float | None = None, topic: str | None = None,
                      since: str | None = None, until: str | None = None, version: str | None = None,
                      text: str | None = None, sort: str = "newest", limit: int = 50,
                      offset: int = 0) -> tuple[int, list[ConversationSummary]]:
        """Conversations (one per sender) having at least one turn that matches every given filter (see
        `SqliteConversations.conversations` for the filters)."""
        if rating not in _RATING_SQL:
            raise ValueError(f"rating must be one of {sorted(_RATING_SQL)}")
        if sort not in _ORDER:
            raise ValueError(f"sort must be one of {sorted(_ORDER)}")
        conditions, params = [_RATING_SQL[rating]] if _RATING_SQL[rating] else [], []
        for clause, value in (("t.score < %s", score_below), ("t.answer_topic = %s", topic),
                              ("t.created_at >= %s", since), ("t.created_at < %s", until),
                              ("t.model_version = %s", version)):
            if value is not None:
                conditions.append(clause)
                params.append(value)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append("(t.user_text ILIKE %s ESCAPE '\\' OR t.answer_text ILIKE %s ESCAPE '\\' "
                              "OR t.sender_id = %s)")
            params += [pattern, pattern, text]
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        matched = (f"SELECT t.sender_id, max(t.created_at) AS hit_at, count(*) AS hits FROM turns t "
                   f"LEFT JOIN ratings r ON r.turn_id = t.id {where} GROUP BY t.sender_id")
        total = self._value(f"SELECT count(*) FROM ({matched}) m", params)
        rows = self._rows(f"""
            WITH matched AS ({matched}) SELECT * FROM (
            SELECT t.sender_id, count(*) AS turns, min(t.created_at) AS first_at, max(t.created_at) AS last_at,
                   count(*) FILTER (WHERE r.score = 0) AS down, count(*) FILTER (WHERE r.score = 1) AS up,
                   min(t.score) AS min_score, string_agg(DISTINCT t.model_version, ',') AS versions,
                   m.hits AS matching_turns,
                   (SELECT h.user_text FROM turns h WHERE h.sender_id = t.sender_id AND h.created_at = m.hit_at
                    ORDER BY h.seq DESC LIMIT 1) AS question
            FROM turns t JOIN matched m ON m.sender_id = t.sender_id LEFT JOIN ratings r ON r.turn_id = t.id
            GROUP BY t.sender_id, m.hits, m.hit_at) s ORDER BY {_ORDER[sort]} LIMIT %s OFFSET %s""",
                          [*params, limit, offset])
        return total, [ConversationSummary.from_row(
            row, versions=sorted(set((row["versions"] or "").split(",")) - {""})) for row in rows]

    def conversation(self, sender_id: str) -> list[Turn]:
        return [_turn(r) for r in self._rows(
            f"{TURNS_WITH_RATINGS} WHERE t.sender_id = %s ORDER BY t.created_at, t.seq", [sender_id])]

    def turn_facets(self) -> TurnFacets:
        topics = [r["answer_topic"] for r in self._rows(
            'SELECT DISTINCT answer_topic COLLATE "C" AS answer_topic FROM turns WHERE answer_topic IS NOT NULL '
            "ORDER BY 1")]
        versions = [r["model_version"] for r in self._rows(
            'SELECT DISTINCT model_version COLLATE "C" AS model_version FROM turns ORDER BY 1')]
        span = self._rows("SELECT min(created_at) AS first, max(created_at) AS last, "
                          "count(DISTINCT sender_id) AS senders FROM turns")[0]
        return TurnFacets(topics, versions, span["first"], span["last"], span["senders"])

    def iter_turns(self, batch: int = 500) -> Iterator[Turn]:
        last = 0
        while True:
            rows = self._rows(f"{TURNS_WITH_RATINGS} WHERE t.seq > %s ORDER BY t.seq LIMIT %s", [last, batch])
            if not rows:
                return
            last = rows[-1]["seq"]
            for row in rows:
                yield _turn(row)
