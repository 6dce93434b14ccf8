"""The plugin's log: one SQLite file (WAL mode) with every turn and rating. The only module using sqlite-utils.

Tables (open the file in Datasette or `sqlite-utils` as it is):
    turns             one row per answer the bot gave: who asked what, which answer, which version, score, top-k
    ratings           one row per rated turn (a new rating by the same sender replaces the old one)
    rounds            one row per fine-tuning round: status, stage, progress, numbers, why it promoted or not
    round_prompts     the prompts a round collected, with the turns they came from
    round_candidates  every sampled candidate with q, its reward parts and whether it was accepted
    training_examples (view) accepted candidates with their provenance: turns, sampling version, rule, round
    meta              schema version
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import RatingRefused

SCHEMA_VERSION = 3


def process_alive(pid: int | None) -> bool:
    """Whether a process id belongs to a running process (a round's owner, say)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- writing -------------------------------------------------------------------------------------------

    def log_turn(self, turn: TurnRecord) -> str:
        """Insert one turn; returns its id (32 hex characters)."""
        turn_id = uuid.uuid4().hex
        row = {"id": turn_id, **asdict(turn), "top_k": json.dumps(turn.top_k), "created_at": utc_now()}
        with self._transaction():
            self.db["turns"].insert(row)
        return turn_id

    def rate(self, turn_id: str, sender_id: str, score: int, max_per_minute: int | None = None) -> RatingRecord:
        """Record `score` (0 or 1) for a turn the same sender was shown; replaces that sender's earlier rating.

        Raises:
            RatingRefused: the turn does not exist, belongs to another sender, or the sender already rated
                `max_per_minute` times in the last minute. Nothing is written.
        """
        if score not in (0, 1):
            raise RatingRefused(f"a rating is 0 or 1, not {score!r}")
        now = utc_now()
        with self._transaction():
            if max_per_minute is not None:
                minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
                recent = self.db.execute("SELECT count(*) FROM ratings WHERE sender_id = ? AND updated_at > ?",
                                         [sender_id, minute_ago]).fetchone()[0]
                if recent >= max_per_minute:
                    raise RatingRefused("that is a lot of ratings in one minute; please wait a moment")
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

    def rated_turns(self, exclude_turn_ids: set[str] | None = None) -> list[dict[str, Any]]:
        """Every rated turn (id, sender, text, served answer, rating), oldest first."""
        rows = self._plain_query(f"{_TURN_FIELDS} WHERE r.score IS NOT NULL ORDER BY t.created_at, t.rowid", [])
        return [r for r in rows if not exclude_turn_ids or r["id"] not in exclude_turn_ids]

    def turns_for_round(self, since: str | None, limit: int) -> list[dict[str, Any]]:
        """Turns logged after `since` (all when None), newest first, with their rating."""
        where, params = ("WHERE t.created_at > ?", [since]) if since else ("", [])
        return self._plain_query(f"{_TURN_FIELDS} {where} ORDER BY t.created_at DESC, t.rowid DESC LIMIT ?",
                                 [*params, limit])

    def turns_before(self, until: str, limit: int) -> list[dict[str, Any]]:
        """Turns logged up to `until`, newest first (the pool a round replays from)."""
        return self._plain_query(f"{_TURN_FIELDS} WHERE t.created_at <= ? ORDER BY t.created_at DESC, t.rowid DESC "
                                 "LIMIT ?", [until, limit])

    def ratings_since(self, since: str | None) -> int:
        with self._lock:
            if since is None:
                return self.db["ratings"].count
            return self.db.execute("SELECT count(*) FROM ratings WHERE updated_at > ?", [since]).fetchone()[0]

    # ---- personal data -------------------------------------------------------------------------------------

    def forget(self, sender_id: str) -> dict[str, int]:
        """Delete a customer's turns and ratings, and every trace of them in recorded rounds, in one transaction.

        Returns how many rows of each kind went. Future rounds cannot use them: the turns no longer exist.
        """
        with self._transaction():
            turn_ids = {row[0] for row in self.db.execute("SELECT id FROM turns WHERE sender_id = ?", [sender_id])}
            ratings = self.db.execute("DELETE FROM ratings WHERE sender_id = ? OR turn_id IN "
                                      "(SELECT id FROM turns WHERE sender_id = ?)", [sender_id, sender_id]).rowcount
            turns = self.db.execute("DELETE FROM turns WHERE sender_id = ?", [sender_id]).rowcount
            prompts = 0
            for round_id, prompt_id, raw in list(self.db.execute(
                    "SELECT round_id, prompt_id, turn_ids FROM round_prompts")):
                ids = json.loads(raw)
                if not turn_ids.intersection(ids):
                    continue
                kept = [t for t in ids if t not in turn_ids]
                if kept:
                    self.db.execute("UPDATE round_prompts SET turn_ids = ? WHERE round_id = ? AND prompt_id = ?",
                                    [json.dumps(kept), round_id, prompt_id])
                else:  # the prompt was theirs alone: its text and candidates go too
                    self.db.execute("DELETE FROM round_candidates WHERE round_id = ? AND prompt_id = ?",
                                    [round_id, prompt_id])
                    self.db.execute("DELETE FROM round_prompts WHERE round_id = ? AND prompt_id = ?",
                                    [round_id, prompt_id])
                    prompts += 1
        return {"turns": turns, "ratings": ratings, "round_prompts": prompts}

    def redact_older_than(self, cutoff: str, redact: Any) -> int:
        """Apply `redact` to the raw question and answer of turns logged before `cutoff`; returns how many."""
        with self._transaction():
            rows = list(self.db.execute("SELECT id, user_text, answer_text FROM turns WHERE created_at < ? AND "
                                        "redacted = 0", [cutoff]))
            for turn_id, user_text, answer_text in rows:
                self.db.execute("UPDATE turns SET user_text = ?, answer_text = ?, redacted = 1 WHERE id = ?",
                                [redact(user_text), redact(answer_text or ""), turn_id])
        return len(rows)

    def backup(self, destination: str | Path) -> dict[str, int]:
        """Copy the whole database with SQLite's online backup API (writers may keep writing); returns row counts.

        Raises:
            OSError: `destination` exists already or cannot be written.
        """
        destination = Path(destination)
        if destination.exists():
            raise FileExistsError(f"{destination} exists; choose a new file")
        destination.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(destination)
        try:
            with self._lock:
                self.db.conn.backup(target)
            return {table: target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in ("turns", "ratings", "rounds", "round_prompts", "round_candidates")}
        finally:
            target.close()

    # ---- rounds --------------------------------------------------------------------------------------------

    def start_round(self, live_version: str, rule: str, params: dict[str, Any], pid: int) -> int:
        with self._transaction():
            return self.db["rounds"].insert({
                "status": "running", "stage": "starting", "progress": 0.0, "message": "", "started_at": utc_now(),
                "live_version": live_version, "rule": rule, "params": json.dumps(params), "pid": pid,
            }).last_pk

    def update_round(self, round_id: int, **fields: Any) -> None:
        """Set columns of a round; dicts and lists are stored as JSON."""
        values = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in fields.items()}
        with self._transaction():
            self.db["rounds"].update(round_id, values)

    def round(self, round_id: int) -> dict[str, Any] | None:
        rows = self._rounds("WHERE id = ?", [round_id])
        return rows[0] if rows else None

    def rounds(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        return self._rounds("ORDER BY id DESC LIMIT ?", [limit])

    def last_completed_round_start(self) -> str | None:
        """When the last round that used its prompts (promoted or kept) started: newer turns are 'new'."""
        with self._lock:
            row = self.db.execute("SELECT max(started_at) FROM rounds WHERE status IN ('promoted', 'kept')").fetchone()
        return row[0] if row else None

    def fail_abandoned_rounds(self, is_alive: Any) -> list[int]:
        """Rounds still marked running whose process is gone (killed) become failed; returns their ids."""
        with self._lock:
            running = list(self.db.query("SELECT id, pid FROM rounds WHERE status = 'running'"))
        abandoned = [r["id"] for r in running if not is_alive(r["pid"])]
        for round_id in abandoned:
            self.update_round(round_id, status="failed", finished_at=utc_now(),
                              reason="the round's process ended without finishing (killed or crashed)")
        return abandoned

    def save_round_rows(self, round_id: int, prompts: list[dict[str, Any]], candidates: list[dict[str, Any]]) -> None:
        """Record a round's prompts and candidates in one transaction (all or nothing)."""
        with self._transaction():
            self.db["round_prompts"].insert_all([{**p, "round_id": round_id, "turn_ids": json.dumps(p["turn_ids"])}
                                                 for p in prompts])
            self.db["round_candidates"].insert_all([{**c, "round_id": round_id} for c in candidates])

    def round_candidates(self, round_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query("SELECT * FROM round_candidates WHERE round_id = ? ORDER BY prompt_id, draw",
                                      [round_id]))

    def training_examples(self, round_id: int | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE round_id = ?", [round_id]) if round_id is not None else ("", [])
        with self._lock:
            return list(self.db.query(f"SELECT * FROM training_examples {where}", params))

    def count(self, table: str) -> int:
        if table not in ("turns", "ratings", "rounds", "round_prompts", "round_candidates"):
            raise ValueError(f"no table {table!r}")
        with self._lock:
            return self.db[table].count

    # ---- operator console ----------------------------------------------------------------------------------

    def conversations(self, *, rating: str = "any", score_below: float | None = None, topic: str | None = None,
                      since: str | None = None, until: str | None = None, version: str | None = None,
                      text: str | None = None, sort: str = "newest", limit: int = 50,
                      offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Conversations (one per sender) having at least one turn that matches every given filter.

        Args:
            rating: any | down | up | rated | unrated (of the matching turn).
            score_below: the matching turn's answer score (cosine) is below this.
            topic / version: the matching turn was answered with this topic / by this model version.
            since / until: ISO timestamps or dates; the matching turn was logged at or after `since`, before `until`.
            text: case-insensitive substring of the question or the answer, or the exact sender id.
            sort: newest (last turn first) | down_first (conversations with a 👎 first, then newest) |
                lowest_score (lowest answer score first).

        Returns:
            (how many conversations match, one page of them) — each with its turn count, 👍/👎 counts, lowest
            score, model versions, first/last time and the newest matching question.
        """
        conditions, params = [], []
        rating_sql = {"any": None, "down": "r.score = 0", "up": "r.score = 1", "rated": "r.score IS NOT NULL",
                      "unrated": "r.score IS NULL"}
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
        with self._lock:
            total = self.db.execute(f"SELECT count(*) FROM ({matched})", params).fetchone()[0]
            rows = list(self.db.query(f"""
                WITH matched AS ({matched})
                SELECT t.sender_id, count(*) AS turns, min(t.created_at) AS first_at, max(t.created_at) AS last_at,
                       coalesce(sum(r.score = 0), 0) AS down, coalesce(sum(r.score = 1), 0) AS up,
                       min(t.score) AS min_score, group_concat(DISTINCT t.model_version) AS versions,
                       m.hits AS matching_turns,
                       (SELECT h.user_text FROM turns h WHERE h.sender_id = t.sender_id AND h.created_at = m.hit_at
                        ORDER BY h.rowid DESC LIMIT 1) AS question
                FROM turns t JOIN matched m ON m.sender_id = t.sender_id LEFT JOIN ratings r ON r.turn_id = t.id
                GROUP BY t.sender_id ORDER BY {order[sort]} LIMIT ? OFFSET ?""", [*params, limit, offset]))
        for row in rows:
            row["versions"] = sorted(set((row["versions"] or "").split(",")) - {""})
        return total, rows

    def conversation(self, sender_id: str) -> list[dict[str, Any]]:
        """Every turn of one conversation, oldest first, with its top-k alternatives and its rating."""
        return self._query(f"{_TURNS_WITH_RATINGS} WHERE t.sender_id = ? ORDER BY t.created_at, t.rowid",
                           [sender_id])

    def turn_facets(self) -> dict[str, Any]:
        """What the inbox can filter on: answer topics and model versions in the log, and its time span."""
        with self._lock:
            topics = [r[0] for r in self.db.execute(
                "SELECT DISTINCT answer_topic FROM turns WHERE answer_topic IS NOT NULL ORDER BY 1")]
            versions = [r[0] for r in self.db.execute("SELECT DISTINCT model_version FROM turns ORDER BY 1")]
            first, last, senders = self.db.execute(
                "SELECT min(created_at), max(created_at), count(DISTINCT sender_id) FROM turns").fetchone()
        return {"topics": topics, "versions": versions, "first_at": first, "last_at": last, "conversations": senders}

    def iter_turns(self, batch: int = 500) -> Iterator[dict[str, Any]]:
        """Every turn with its rating, oldest first, read in batches (an export never holds the log in memory)."""
        last = 0
        while True:
            with self._lock:
                rows = list(self.db.query(
                    "SELECT t.rowid AS _rowid, t.id, t.sender_id, t.created_at, t.user_text, t.answer_id, "
                    "t.answer_topic, t.answer_text, t.model_version, t.score, r.score AS rating, "
                    "r.updated_at AS rated_at FROM turns t LEFT JOIN ratings r ON r.turn_id = t.id "
                    "WHERE t.rowid > ? ORDER BY t.rowid LIMIT ?", [last, batch]))
            if not rows:
                return
            last = rows[-1]["_rowid"]
            for row in rows:
                del row["_rowid"]
                yield row

    def round_examples(self, round_id: int, accepted: bool, limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
        """A round's accepted (or rejected) candidates with their prompt and reward parts, highest reward first.

        Returns (how many there are, the first `limit`).
        """
        with self._lock:
            total = self.db.execute("SELECT count(*) FROM round_candidates WHERE round_id = ? AND accepted = ?",
                                    [round_id, int(accepted)]).fetchone()[0]
            rows = list(self.db.query(
                "SELECT c.prompt_id, c.draw, p.text AS prompt, c.answer_id, c.topic, c.q, c.cosine, c.similarity, "
                "c.rating_up, c.rating_down, c.rating, c.reward, c.accept_probability, c.accepted, c.sampled_by "
                "FROM round_candidates c JOIN round_prompts p ON p.round_id = c.round_id AND p.prompt_id = c.prompt_id "
                "WHERE c.round_id = ? AND c.accepted = ? ORDER BY c.reward DESC, c.prompt_id, c.draw LIMIT ?",
                [round_id, int(accepted), limit]))
        return total, rows

    def add_answer_revision(self, answer_id: str, topic: str, category: str, text: str, action: str,
                            note: str = "") -> dict[str, Any]:
        """Record one edit of the answer bank (action 'add' or 'edit'); returns the stored revision."""
        if action not in ("add", "edit"):
            raise ValueError("action must be 'add' or 'edit'")
        self._ensure_console_tables()
        with self._transaction():
            revision_id = self.db["answer_revisions"].insert({
                "answer_id": answer_id, "topic": topic, "category": category, "text": text, "action": action,
                "note": note, "created_at": utc_now()}).last_pk
            return dict(self.db["answer_revisions"].get(revision_id))

    def answer_revisions(self, answer_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Edits of the answer bank (of one answer, or all), newest first."""
        self._ensure_console_tables()
        where, params = ("WHERE answer_id = ?", [answer_id]) if answer_id is not None else ("", [])
        with self._lock:
            return list(self.db.query(f"SELECT * FROM answer_revisions {where} ORDER BY id DESC LIMIT ?",
                                      [*params, limit]))

    def latest_answer_revisions(self) -> list[dict[str, Any]]:
        """The newest revision of every edited or added answer, in the order the answers were first edited."""
        self._ensure_console_tables()
        with self._lock:
            return list(self.db.query(
                "SELECT a.* FROM answer_revisions a JOIN (SELECT answer_id, max(id) AS newest, min(id) AS oldest "
                "FROM answer_revisions GROUP BY answer_id) n ON a.id = n.newest ORDER BY n.oldest"))

    def start_bank_publication(self, owner_pid: int, is_alive: Any) -> int | None:
        """Record that a publication of the edited answer bank starts (owned by `owner_pid`); None if one runs."""
        self._ensure_console_tables()
        with self._transaction():
            running = list(self.db.execute("SELECT id, pid FROM bank_publications WHERE status = 'running'"))
            if any(is_alive(pid) for _, pid in running):
                return None
            for publication_id, _ in running:
                self.db["bank_publications"].update(publication_id, {
                    "status": "failed", "finished_at": utc_now(),
                    "message": "its process ended without finishing (killed or crashed)"})
            return self.db["bank_publications"].insert({
                "status": "running", "started_at": utc_now(), "pid": owner_pid, "message": "starting"}).last_pk

    def update_bank_publication(self, publication_id: int, **fields: Any) -> None:
        self._ensure_console_tables()
        with self._transaction():
            self.db["bank_publications"].update(publication_id, fields)

    def bank_publications(self, limit: int = 10, is_alive: Any = None) -> list[dict[str, Any]]:
        """Publications of the answer bank, newest first; with `is_alive`, dead 'running' ones become failed."""
        self._ensure_console_tables()
        if is_alive is not None:
            with self._lock:
                running = list(self.db.execute("SELECT id, pid FROM bank_publications WHERE status = 'running'"))
            for publication_id, pid in running:
                if not is_alive(pid):
                    self.update_bank_publication(publication_id, status="failed", finished_at=utc_now(),
                                                 message="its process ended without finishing (killed or crashed)")
        with self._lock:
            return list(self.db.query("SELECT * FROM bank_publications ORDER BY id DESC LIMIT ?", [limit]))

    def _ensure_console_tables(self) -> None:
        """The console's own tables (answer-bank revisions and publications), created on first use."""
        if getattr(self, "_console_tables_ready", False):
            return
        with self._lock:
            self.db.execute("""CREATE TABLE IF NOT EXISTS answer_revisions (
                id INTEGER PRIMARY KEY AUTOINCREMENT, answer_id TEXT NOT NULL, topic TEXT NOT NULL,
                category TEXT NOT NULL, text TEXT NOT NULL, action TEXT NOT NULL, note TEXT,
                created_at TEXT NOT NULL)""")
            self.db.execute("CREATE INDEX IF NOT EXISTS idx_answer_revisions_answer ON answer_revisions (answer_id)")
            self.db.execute("""CREATE TABLE IF NOT EXISTS bank_publications (
                id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, started_at TEXT NOT NULL,
                finished_at TEXT, live_version TEXT, new_version TEXT, revision_id INTEGER, answers INTEGER,
                message TEXT, pid INTEGER)""")
        self._console_tables_ready = True

    # ---- internals -----------------------------------------------------------------------------------------

    def _query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self.db.query(sql, params))
        for row in rows:
            row["top_k"] = json.loads(row["top_k"]) if row.get("top_k") else []
        return rows

    def _plain_query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    def _rounds(self, clause: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self.db.query(f"SELECT * FROM rounds {clause}", params))
        for row in rows:
            for key in ("params", "stats", "stage_seconds"):
                row[key] = json.loads(row[key]) if row.get(key) else {}
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


def _schema_2(db: sqlite_utils.Database) -> None:
    db["rounds"].create({
        "id": int, "status": str, "stage": str, "progress": float, "message": str, "started_at": str,
        "finished_at": str, "live_version": str, "new_version": str, "rule": str, "params": str, "stats": str,
        "stage_seconds": str, "reason": str, "report_dir": str, "pid": int,
    }, pk="id")
    db["round_prompts"].create({
        "round_id": int, "prompt_id": int, "text": str, "turn_ids": str, "replay": int, "gate_only": int,
    }, pk=("round_id", "prompt_id"), foreign_keys=[("round_id", "rounds", "id")])
    db["round_candidates"].create({
        "round_id": int, "prompt_id": int, "draw": int, "answer_id": str, "topic": str, "q": float,
        "cosine": float, "similarity": float, "rating_up": float, "rating_down": float, "rating": float,
        "reward": float, "accept_probability": float, "accepted": int, "rule": str, "sampled_by": str,
    }, pk=("round_id", "prompt_id", "draw"), foreign_keys=[("round_id", "rounds", "id")])
    db.execute("""
        CREATE VIEW training_examples AS
        SELECT c.round_id, c.prompt_id, p.text AS prompt, c.answer_id, c.topic, p.turn_ids, c.sampled_by, c.rule,
               c.q, c.similarity, c.rating_up, c.rating_down, c.rating, c.reward, c.accept_probability
        FROM round_candidates c JOIN round_prompts p ON p.round_id = c.round_id AND p.prompt_id = c.prompt_id
        WHERE c.accepted = 1""")


def _schema_3(db: sqlite_utils.Database) -> None:
    # Turns whose raw text the retention period has already redacted.
    db["turns"].add_column("redacted", int, not_null_default=0)


_MIGRATIONS = {1: _schema_1, 2: _schema_2, 3: _schema_3}
_TURN_FIELDS = (
    "SELECT t.id, t.sender_id, t.user_text, t.answer_id, t.answer_topic, t.created_at, r.score AS rating "
    "FROM turns t LEFT JOIN ratings r ON r.turn_id = t.id"
)

_TURNS_WITH_RATINGS = (
    "SELECT t.*, r.score AS rating, r.updated_at AS rated_at FROM turns t LEFT JOIN ratings r ON r.turn_id = t.id"
)
