"""Privacy and safety of the log: forgetting a customer, retention, online backup (SQLite)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..interfaces import COUNTED
from .base import SqliteBase


class SqliteMaintenance(SqliteBase):
    def forget(self, sender_id: str) -> dict[str, int]:
        """Delete a customer's turns, ratings, signals and hand-offs (with their contact), and every trace of them in
        recorded rounds, in one transaction."""
        with self._transaction():
            turn_ids = {row[0] for row in self.db.execute("SELECT id FROM turns WHERE sender_id = ?", [sender_id])}
            ratings = self.db.execute("DELETE FROM ratings WHERE sender_id = ? OR turn_id IN "
                                      "(SELECT id FROM turns WHERE sender_id = ?)", [sender_id, sender_id]).rowcount
            signals = self.db.execute("DELETE FROM signals WHERE sender_id = ? OR turn_id IN "
                                      "(SELECT id FROM turns WHERE sender_id = ?)", [sender_id, sender_id]).rowcount
            turns = self.db.execute("DELETE FROM turns WHERE sender_id = ?", [sender_id]).rowcount
            self.db.execute("DELETE FROM rating_attempts WHERE sender_id = ?", [sender_id])
            handoffs = self.db.execute("DELETE FROM handoffs WHERE sender_id = ?", [sender_id]).rowcount
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
        return {"turns": turns, "ratings": ratings, "round_prompts": prompts, "handoffs": handoffs,
                "signals": signals}

    def redact_older_than(self, cutoff: str, redact: Callable[[str], str]) -> int:
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
            return {table: target.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in COUNTED}
        finally:
            target.close()
