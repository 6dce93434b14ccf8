"""The log's schema, as numbered migrations; `meta.schema_version` says which ran. The only schema system.

Tables (open the file in Datasette or `sqlite-utils` as it is):
    turns             one row per answer the bot gave: who asked what, which reply (reply_key), version, score, top-k
    ratings           one row per rated turn (a new rating by the same sender replaces the old one)
    rating_attempts   every rating call under a per-minute cap (sender_id, at), the last minute only: the cap
                      counts attempts, replacements and refusals included, across processes
    rounds            one row per fine-tuning round: status, stage, progress, numbers, why it promoted or not
    round_prompts     the prompts a round collected, with the turns they came from
    round_candidates  every sampled candidate (candidate_key, candidate_text) with q, reward parts, accepted or not
    training_examples (view) accepted candidates with their provenance: turns, sampling version, rule, round
    answer_revisions  every edit of the answer bank made in the console
    bank_publications publications of the edited answer bank
    jobs              long work started from the web or the CLI (rounds, publications): queued/running/finished/failed
    handoffs          requests to talk to a person: sender, reason, live version, open/taken/closed, the contact
    signals           what a customer told us about a turn besides 👍/👎: the pick after "Was it one of these?"
                      (choice, none_of_these), what they did right after it (reask, asked_human, thanks), and the
                      answer that settled a missed question they then put in other words (resolved)
    turns.writing     (JSON, NULL for a bank answer) how the generative kind wrote the reply: grounding answer ids,
                      fallback and its reason, prompt/new token counts, the writer's milliseconds
    meta              schema version
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import sqlite_utils

SCHEMA_VERSION = 8


def migrate(db: sqlite_utils.Database, transaction: Callable[[], AbstractContextManager[None]]) -> None:
    """Run the migrations this file has not had yet, each in its own transaction with its version bump."""
    if not db["meta"].exists():
        db["meta"].create({"key": str, "value": str}, pk="key")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    current = int(row[0]) if row else 0
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with transaction():
            _MIGRATIONS[version](db)
            db["meta"].upsert({"key": "schema_version", "value": str(version)}, pk="key")


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


def _schema_4(db: sqlite_utils.Database) -> None:
    """Candidate keys (a reply need not come from the answer bank), the console's tables, and one jobs table."""
    # Replies are identified by a key; answer_id is only set for answers from the bank.
    db["turns"].transform(not_null={"answer_id": False})
    db["turns"].add_column("reply_key", str)
    db.execute("UPDATE turns SET reply_key = answer_id WHERE reply_key IS NULL")
    db["round_candidates"].add_column("candidate_key", str)
    db["round_candidates"].add_column("candidate_text", str)
    db.execute("UPDATE round_candidates SET candidate_key = answer_id WHERE candidate_key IS NULL")
    db.execute("DROP VIEW training_examples")
    db.execute("""
        CREATE VIEW training_examples AS
        SELECT c.round_id, c.prompt_id, p.text AS prompt, c.candidate_key, c.candidate_text, c.answer_id, c.topic,
               p.turn_ids, c.sampled_by, c.rule, c.q, c.similarity, c.rating_up, c.rating_down, c.rating, c.reward,
               c.accept_probability
        FROM round_candidates c JOIN round_prompts p ON p.round_id = c.round_id AND p.prompt_id = c.prompt_id
        WHERE c.accepted = 1""")
    # The console's tables were created on first use before; they exist already in logs the console touched.
    db.execute("""CREATE TABLE IF NOT EXISTS answer_revisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, answer_id TEXT NOT NULL, topic TEXT NOT NULL,
        category TEXT NOT NULL, text TEXT NOT NULL, action TEXT NOT NULL, note TEXT,
        created_at TEXT NOT NULL)""")
    db.execute("CREATE INDEX IF NOT EXISTS idx_answer_revisions_answer ON answer_revisions (answer_id)")
    db.execute("""CREATE TABLE IF NOT EXISTS bank_publications (
        id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, started_at TEXT NOT NULL,
        finished_at TEXT, live_version TEXT, new_version TEXT, revision_id INTEGER, answers INTEGER,
        message TEXT, pid INTEGER)""")
    db.execute("""CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, status TEXT NOT NULL, pid INTEGER,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, message TEXT)""")
    db.execute("CREATE INDEX idx_jobs_status ON jobs (status)")
    db["rounds"].add_column("job_id", int)
    db["bank_publications"].add_column("job_id", int)
    # Work still marked running gets a job, so the one liveness check covers it too.
    for table, kind in (("rounds", "round"), ("bank_publications", "publish_bank")):
        for row_id, pid, started in list(db.execute(f"SELECT id, pid, started_at FROM {table} "
                                                    "WHERE status = 'running'")):
            job_id = db.execute("INSERT INTO jobs (kind, status, pid, created_at, started_at) "
                                "VALUES (?, 'running', ?, ?, ?)", [kind, pid, started, started]).lastrowid
            db.execute(f"UPDATE {table} SET job_id = ? WHERE id = ?", [job_id, row_id])


def _schema_5(db: sqlite_utils.Database) -> None:
    """Rating attempts, so the per-minute cap counts calls (flips of one turn too), not stored rows."""
    db.execute("CREATE TABLE rating_attempts (sender_id TEXT NOT NULL, at TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_rating_attempts_sender_at ON rating_attempts (sender_id, at)")
    db.execute("CREATE INDEX idx_rating_attempts_at ON rating_attempts (at)")


def _schema_6(db: sqlite_utils.Database) -> None:
    """Hand-offs: every request to talk to a person, as the operators' queue (open -> taken -> closed)."""
    db.execute("""CREATE TABLE handoffs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, sender_id TEXT NOT NULL, reason TEXT NOT NULL,
        status TEXT NOT NULL, created_at TEXT NOT NULL, model_version TEXT, contact TEXT,
        contact_state TEXT NOT NULL DEFAULT 'pending', contact_redacted INTEGER NOT NULL DEFAULT 0,
        taken_by TEXT, taken_at TEXT, closed_by TEXT, closed_at TEXT)""")
    db.execute("CREATE INDEX idx_handoffs_status ON handoffs (status, created_at)")
    db.execute("CREATE INDEX idx_handoffs_sender ON handoffs (sender_id)")
    db.execute("CREATE INDEX idx_handoffs_version ON handoffs (model_version)")


def _schema_7(db: sqlite_utils.Database) -> None:
    """Choices and implicit signals, each tied to the turn it is about (and through it to the version)."""
    db.execute("""CREATE TABLE signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT, turn_id TEXT NOT NULL REFERENCES turns(id), sender_id TEXT NOT NULL,
        kind TEXT NOT NULL, reply_key TEXT, created_at TEXT NOT NULL)""")
    db.execute("CREATE INDEX idx_signals_turn ON signals (turn_id)")
    db.execute("CREATE INDEX idx_signals_created ON signals (created_at)")
    db.execute("CREATE INDEX idx_signals_sender ON signals (sender_id)")


def _schema_8(db: sqlite_utils.Database) -> None:
    """How a written reply was written (the generative kind); NULL for a bank answer and for older turns."""
    db["turns"].add_column("writing", str)


_MIGRATIONS = {1: _schema_1, 2: _schema_2, 3: _schema_3, 4: _schema_4, 5: _schema_5, 6: _schema_6, 7: _schema_7,
               8: _schema_8}
