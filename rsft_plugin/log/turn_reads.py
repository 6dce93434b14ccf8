"""The turn and rating reads both SQL backends share: one text of each query for SQLite and PostgreSQL.

They differ only in the parameter placeholder (`?` / `%s`), in the column that orders turns logged in the same
millisecond (SQLite's rowid / PostgreSQL's `seq`) and in how `top_k` comes back (JSON text / already parsed).
A backend mixes this in before its base class and sets `_PLACEHOLDER`, `_TIE` and `_turn`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .interfaces import COUNTED
from .records import CHOICE_KINDS, LABEL, SETTLING_KINDS, RatingCounts, Turn

TURN_FIELDS = (  # a written reply's text too (not a bank answer's: the bank has it): it may become a reference
    "SELECT t.id, t.sender_id, t.user_text, t.answer_id, t.answer_topic, t.created_at, t.reply_key, "
    "CASE WHEN t.reply_key <> t.answer_id OR t.answer_id IS NULL THEN t.answer_text END AS answer_text, "
    "r.score AS rating FROM turns t LEFT JOIN ratings r ON r.turn_id = t.id"
)
TURNS_WITH_RATINGS = (
    "SELECT t.*, r.score AS rating, r.updated_at AS rated_at FROM turns t LEFT JOIN ratings r ON r.turn_id = t.id"
)
ID_CHUNK = 500  # turn ids per `IN (...)` query
NOT_UNDERSTOOD_KEY = "not_understood"  # not_understood.NOT_UNDERSTOOD (the log imports no service module)
# The inbox's "To label": a turn whose customer did not get the right answer — rated 👎 with no pick, answered "None
# of these", or not understood — and that no operator has labelled yet (labels.py). Over `turns t` joined with
# `ratings r`, as the conversations query reads them; the same SQL on both backends.
NONE_OF_THESE_KIND = CHOICE_KINDS[1]
_SETTLED = ", ".join(f"'{kind}'" for kind in (LABEL, *SETTLING_KINDS))
TO_LABEL_SQL = (
    f"NOT EXISTS (SELECT 1 FROM signals s WHERE s.turn_id = t.id AND s.kind IN ({_SETTLED})) "
    f"AND (r.score = 0 OR t.reply_key = '{NOT_UNDERSTOOD_KEY}' "
    f"OR EXISTS (SELECT 1 FROM signals s WHERE s.turn_id = t.id AND s.kind = '{NONE_OF_THESE_KIND}'))"
)


def newest_rows(read: Callable[..., list[dict[str, Any]]], newest_first_sql: str, params: list[Any], newest: int,
                keep: Callable[[dict[str, Any]], bool], dropped_at_most: int = 0) -> list[dict[str, Any]]:
    """The `newest` rows of `newest_first_sql` (ordered newest first, unique `id`s) that `keep` accepts, oldest first.

    Read in pages of `newest + dropped_at_most` rows, so that the first page is enough when `keep` drops at most
    that many (the turns a round keeps out for its gate); a row that a concurrent insert pushed into the next page
    is read once.
    """
    if newest <= 0:
        return []
    page, kept, seen, offset = newest + dropped_at_most, [], set(), 0
    while len(kept) < newest:
        rows = read(f"{newest_first_sql} LIMIT ? OFFSET ?", [*params, page, offset])
        for row in rows:
            if row["id"] not in seen and keep(row):
                seen.add(row["id"])
                kept.append(row)
        if len(rows) < page:
            break
        offset += page
    return kept[:newest][::-1]


class TurnReads:
    _PLACEHOLDER: str  # "?" (SQLite) or "%s" (psycopg)
    _TIE: str  # orders turns of the same millisecond: "t.rowid" or "t.seq"

    # Given by the backend's base class (after this one in the MRO, so they are declared, not defined, here).
    _rows: Callable[..., list[dict[str, Any]]]
    _value: Callable[..., Any]
    _turn: Callable[[dict[str, Any]], Turn]  # a row of TURNS_WITH_RATINGS as a Turn (top_k decoded)

    def _read(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """`sql` written with `?` placeholders, run with this backend's."""
        return self._rows(sql.replace("?", self._PLACEHOLDER), params)

    def turn(self, turn_id: str) -> Turn | None:
        rows = self._read(TURNS_WITH_RATINGS + " WHERE t.id = ?", [turn_id])
        return self._turn(rows[0]) if rows else None

    def recent_turns(self, limit: int = 20, sender_id: str | None = None) -> list[Turn]:
        where, params = ("WHERE t.sender_id = ?", [sender_id]) if sender_id else ("", [])
        return [self._turn(r) for r in self._read(
            f"{TURNS_WITH_RATINGS} {where} ORDER BY t.created_at DESC, {self._TIE} DESC LIMIT ?", [*params, limit])]

    def rated_turns(self, exclude_turn_ids: set[str] | None = None, only_turn_ids: set[str] | None = None,
                    newest: int | None = None) -> list[Turn]:
        excluded = exclude_turn_ids or set()
        if only_turn_ids is not None:
            rows = self._rated_among(sorted(only_turn_ids))
        elif newest is not None:
            rows = newest_rows(self._read, f"{TURN_FIELDS} WHERE r.score IS NOT NULL ORDER BY t.created_at DESC, "
                               f"{self._TIE} DESC", [], newest, lambda row: row["id"] not in excluded, len(excluded))
        else:
            rows = self._read(f"{TURN_FIELDS} WHERE r.score IS NOT NULL ORDER BY t.created_at, {self._TIE}")
        return [Turn.from_row(r) for r in rows if r["id"] not in excluded]

    def _rated_among(self, turn_ids: list[str]) -> list[dict[str, Any]]:
        """The rated turns among `turn_ids`, oldest first, by the primary key: a bounded read however long the log
        is. In chunks, so that no query names more parameters than SQLite or PostgreSQL accept."""
        rows: list[dict[str, Any]] = []
        with_order = TURN_FIELDS.replace(" FROM ", f", {self._TIE} AS logged_order FROM ", 1)  # ties of one ms
        for start in range(0, len(turn_ids), ID_CHUNK):
            chunk = turn_ids[start:start + ID_CHUNK]
            rows += self._read(f"{with_order} WHERE r.score IS NOT NULL AND t.id IN ({', '.join('?' * len(chunk))})",
                               chunk)
        return sorted(rows, key=lambda r: (r["created_at"], r["logged_order"]))

    def turns_for_round(self, since: str | None, limit: int) -> list[Turn]:
        where, params = ("WHERE t.created_at > ?", [since]) if since else ("", [])
        return [Turn.from_row(r) for r in self._read(
            f"{TURN_FIELDS} {where} ORDER BY t.created_at DESC, {self._TIE} DESC LIMIT ?", [*params, limit])]

    def turns_before(self, until: str, limit: int) -> list[Turn]:
        return [Turn.from_row(r) for r in self._read(
            f"{TURN_FIELDS} WHERE t.created_at <= ? ORDER BY t.created_at DESC, {self._TIE} DESC LIMIT ?",
            [until, limit])]

    def ratings_since(self, since: str | None) -> int:
        if since is None:
            return self._value("SELECT count(*) FROM ratings")
        return self._value(f"SELECT count(*) FROM ratings WHERE updated_at > {self._PLACEHOLDER}", [since])

    def version_rating_counts(self, model_version: str, *, since: str | None = None, until: str | None = None,
                              newest: int | None = None, exclude_reply_key: str | None = None) -> RatingCounts:
        where, params = ["t.model_version = ?"], [model_version]
        for clause, value in (("t.created_at >= ?", since), ("t.created_at < ?", until),
                              ("(t.reply_key IS NULL OR t.reply_key <> ?)", exclude_reply_key)):
            if value is not None:
                where.append(clause)
                params.append(value)
        limit = "LIMIT ?" if newest is not None else ""
        rows = self._read(
            "SELECT coalesce(sum(CASE WHEN score = 1 THEN 1 ELSE 0 END), 0) AS up, count(*) AS n FROM ("
            f"SELECT r.score FROM turns t JOIN ratings r ON r.turn_id = t.id WHERE {' AND '.join(where)} "
            f"ORDER BY t.created_at DESC, {self._TIE} DESC {limit}) newest_rated",
            [*params, *([newest] if newest is not None else [])])
        up, n = int(rows[0]["up"]), int(rows[0]["n"])
        return RatingCounts(up=up, down=n - up)

    def count(self, table: str) -> int:
        if table not in COUNTED:
            raise ValueError(f"no table {table!r}")
        return self._value(f"SELECT count(*) FROM {table}")
