"""Privacy and safety of the log: forgetting a customer, retention, backup with pg_dump (PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from ...pgserver import pg_binary
from ..interfaces import COUNTED
from .base import PostgresBase


class BackupFailed(OSError):
    """pg_dump could not copy the database (its own message says why)."""


class PostgresMaintenance(PostgresBase):
    def forget(self, sender_id: str) -> dict[str, int]:
        """Delete a customer's turns, ratings, signals and hand-offs (with their contact), and every trace of them in
        recorded rounds, in one transaction.

        The sender's lock keeps their ratings from landing between the deletes; turns they log meanwhile are
        deleted too when committed before the DELETE runs, else kept (as if logged after the forget)."""
        with self._transaction() as cursor:
            self._lock_sender(cursor, sender_id)
            ratings = cursor.execute("DELETE FROM ratings WHERE sender_id = %s OR turn_id IN "
                                     "(SELECT id FROM turns WHERE sender_id = %s)", [sender_id, sender_id]).rowcount
            signals = cursor.execute("DELETE FROM signals WHERE sender_id = %s OR turn_id IN "
                                     "(SELECT id FROM turns WHERE sender_id = %s)", [sender_id, sender_id]).rowcount
            turn_ids = [row["id"] for row in cursor.execute(
                "DELETE FROM turns WHERE sender_id = %s RETURNING id", [sender_id])]
            cursor.execute("DELETE FROM rating_attempts WHERE sender_id = %s", [sender_id])
            handoffs = cursor.execute("DELETE FROM handoffs WHERE sender_id = %s", [sender_id]).rowcount
            prompts = self._forget_in_rounds(cursor, turn_ids)
        return {"turns": len(turn_ids), "ratings": ratings, "round_prompts": prompts, "handoffs": handoffs,
                "signals": signals}

    @staticmethod
    def _forget_in_rounds(cursor: psycopg.Cursor, turn_ids: list[str]) -> int:
        """Drop `turn_ids` from recorded prompts; a prompt that was theirs alone goes with its candidates."""
        if not turn_ids:
            return 0
        gone = set(turn_ids)
        prompts = 0
        for row in cursor.execute("SELECT round_id, prompt_id, turn_ids FROM round_prompts WHERE turn_ids ?| %s "
                                  "FOR UPDATE", [turn_ids]).fetchall():
            kept = [t for t in row["turn_ids"] if t not in gone]
            key = [row["round_id"], row["prompt_id"]]
            if kept:
                cursor.execute("UPDATE round_prompts SET turn_ids = %s WHERE round_id = %s AND prompt_id = %s",
                               [Jsonb(kept), *key])
            else:
                cursor.execute("DELETE FROM round_candidates WHERE round_id = %s AND prompt_id = %s", key)
                cursor.execute("DELETE FROM round_prompts WHERE round_id = %s AND prompt_id = %s", key)
                prompts += 1
        return prompts

    def redact_older_than(self, cutoff: str, redact: Callable[[str], str]) -> int:
        """Apply `redact` to the raw question and answer of turns logged before `cutoff`; returns how many.

        The rows are locked as they are read, so a concurrent run waits and then skips them (redacted by now)."""
        with self._transaction() as cursor:
            rows = cursor.execute("SELECT id, user_text, answer_text FROM turns WHERE created_at < %s AND "
                                  "NOT redacted FOR UPDATE", [cutoff]).fetchall()
            cursor.executemany("UPDATE turns SET user_text = %s, answer_text = %s, redacted = true WHERE id = %s",
                               [[redact(r["user_text"]), redact(r["answer_text"] or ""), r["id"]] for r in rows])
        return len(rows)

    def backup(self, destination: str | Path) -> dict[str, int]:
        """Dump the database with pg_dump (custom format: restore with `pg_restore --dbname=URL FILE`); writers may
        keep writing. The row counts are read in the very snapshot pg_dump copies, so they match the file.

        Raises:
            FileExistsError: `destination` exists already.
            BackupFailed: pg_dump failed; nothing is left at `destination`.
        """
        destination = Path(destination)
        if destination.exists():
            raise FileExistsError(f"{destination} exists; choose a new file")
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".partial")
        # Its own connection: the snapshot stays open for the whole dump without holding up this process's log.
        try:
            connection = psycopg.connect(self.url)
        except psycopg.OperationalError as exc:
            raise BackupFailed(f"cannot reach the PostgreSQL log: {exc}") from exc
        with connection:
            connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            connection.read_only = True
            with connection.cursor() as cursor:
                snapshot = cursor.execute("SELECT pg_export_snapshot()").fetchone()[0]
                counts = {table: cursor.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in COUNTED}
                try:
                    _pg_dump(self.url, snapshot, partial)
                    os.link(partial, destination)  # never replaces a file that appeared meanwhile
                finally:
                    partial.unlink(missing_ok=True)
        return counts


def _pg_dump(url: str, snapshot: str, target: Path) -> None:
    """Run pg_dump on `snapshot`; the password goes in its environment, never on its command line."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ, **({"PGPASSWORD": str(password)} if password is not None else {})}
    done = subprocess.run([str(pg_binary("pg_dump")), "--format=custom", f"--snapshot={snapshot}",
                           f"--file={target}", f"--dbname={make_conninfo(**params)}"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupFailed(f"pg_dump failed: {done.stderr.strip()[-2000:]}")
