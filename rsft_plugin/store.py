"""The plugin's log: one SQLite file (WAL mode) with every turn and rating. The only module using sqlite-utils.

Tables (open the file in Datasette or `sqlite-utils` as it is):
    turns    one row per answer the bot gave: who asked what, which answer, which model version, score, top-k
    ratings  one row per rated turn (a new rating by the same sender replaces the old one)
    meta     schema version
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import RatingRefused

SCHEMA_VERSION = 1


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class TurnRecord:
    """What the bot answered to one customer message."""

    sender_id: str
    message_id: str | None
    user_text: str
    answer_id: str
    answer_topic: str
    answer_text: str
    model_version: str
    score: float
    probability: float
    top_k: list[dict[str, Any]]
    latency_ms: float


@dataclass(frozen=True)
class RatingRecord:
    turn_id: str
    sender_id: str
    score: int
    created_at: str
    replaced: bool  # True when it replaced an earlier rating of the same turn


class Store:
    """Thread-safe access to the log. One connection per Store; WAL lets other processes read meanwhile."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self.db = sqlite_utils.Database(connection)
        self._lock = threading.RLock()
        with self._lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    # ---- writing -------------------------------------------------------------------------------------------

    def log_turn(self, turn: TurnRecord) -> str:
        """Insert one turn; returns its id (32 hex characters)."""
        turn_id = uuid.uuid4().hex
        row = {"id": turn_id, **asdict(turn), "top_k": json.dumps(turn.top_k), "created_at": utc_now()}
        with self._transaction():
            self.db["turns"].insert(row)
        return turn_id

    def rate(self, turn_id: str, sender_id: str, score: int) -> RatingRecord:
        """Record `score` (0 or 1) for a turn the same sender was shown; replaces that sender's earlier rating.

        Raises:
            RatingRefused: the turn does not exist or belongs to another sender. Nothing is written.
        """
        if score not in (0, 1):
            raise RatingRefused(f"a rating is 0 or 1, not {score!r}")
        now = utc_now()
        with self._transaction():
            owner = self.db.execute("SELECT sender_id FROM turns WHERE id = ?", [turn_id]).fetchone()
            if owner is None:
                raise RatingRefused("there is no answer with that id")
            if owner[0] != sender_id:
                raise RatingRefused("that answer was given in another conversation")
            replaced = self.db.execute("SELECT 1 FROM ratings WHERE turn_id = ?", [turn_id]).fetchone() is not None
            self.db.execute(
                "INSERT INTO ratings (turn_id, sender_id, score, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(turn_id) DO UPDATE SET score = excluded.score, updated_at = excluded.updated_at",
                [turn_id, sender_id, score, now, now],
            )
        return RatingRecord(turn_id, sender_id, score, now, replaced)

    # ---- reading -------------------------------------------------------------------------------------------

    def turn(self, turn_id: str) -> dict[str, Any] | None:
        rows = self._query(_TURNS_WITH_RATINGS + " WHERE t.id = ?", [turn_id])
        return rows[0] if rows else None

    def recent_turns(self, limit: int = 20, sender_id: str | None = None) -> list[dict[str, Any]]:
        """Newest turns first, each with its rating (None when unrated)."""
        where, params = ("WHERE t.sender_id = ?", [sender_id]) if sender_id else ("", [])
        return self._query(f"{_TURNS_WITH_RATINGS} {where} ORDER BY t.created_at DESC, t.rowid DESC LIMIT ?",
                           [*params, limit])

    def count(self, table: str) -> int:
        if table not in ("turns", "ratings"):
            raise ValueError(f"no table {table!r}")
        with self._lock:
            return self.db[table].count

    # ---- internals -----------------------------------------------------------------------------------------

    def _query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self.db.query(sql, params))
        for row in rows:
            row["top_k"] = json.loads(row["top_k"]) if row.get("top_k") else []
        return rows

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the write lock up front, so a check-then-write cannot race another process."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _migrate(self) -> None:
        if not self.db["meta"].exists():
            self.db["meta"].create({"key": str, "value": str}, pk="key")
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0]) if row else 0
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                _MIGRATIONS[version](self.db)
                self.db["meta"].upsert({"key": "schema_version", "value": str(version)}, pk="key")


def _schema_1(db: sqlite_utils.Database) -> None:
    db["turns"].create({
        "id": str, "sender_id": str, "message_id": str, "user_text": str, "answer_id": str,
        "answer_topic": str, "answer_text": str, "model_version": str, "score": float, "probability": float,
        "top_k": str, "latency_ms": float, "created_at": str,
    }, pk="id", not_null={"sender_id", "user_text", "answer_id", "model_version", "created_at"})
    db["turns"].create_index(["sender_id", "created_at"])
    db["turns"].create_index(["created_at"])
    db["ratings"].create({
        "turn_id": str, "sender_id": str, "score": int, "created_at": str, "updated_at": str,
    }, pk="turn_id", foreign_keys=[("turn_id", "turns", "id")], not_null={"sender_id", "score", "created_at"})


_MIGRATIONS = {1: _schema_1}

_TURNS_WITH_RATINGS = (
    "SELECT t.*, r.score AS rating, r.updated_at AS rated_at FROM turns t LEFT JOIN ratings r ON r.turn_id = t.id"
)
