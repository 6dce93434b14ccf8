"""Rounds, their prompts and candidates, and the training_examples view (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Json

from ..records import CandidateRow, RoundExample, RoundPrompt, RoundRecord, TrainingExample
from .base import PostgresBase, update_statement, utc_now

_JSON_FIELDS = ("params", "stats", "stage_seconds")
_EXAMPLE_FIELDS = ("c.prompt_id, c.draw, p.text AS prompt, c.candidate_key, c.candidate_text, c.answer_id, c.topic, "
                   "c.q, c.cosine, c.similarity, c.rating_up, c.rating_down, c.rating, c.reward, "
                   "c.accept_probability, c.accepted, c.sampled_by")
_PROMPT_COLUMNS = ("round_id", "prompt_id", "text", "turn_ids", "replay", "gate_only")
_CANDIDATE_COLUMNS = ("round_id", *CandidateRow.__dataclass_fields__)


def _round(row: dict[str, Any]) -> RoundRecord:
    return RoundRecord.from_row(row, **{k: row.get(k) or {} for k in _JSON_FIELDS}, message=row.get("message") or "")


def _insert(table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)))


class PostgresRounds(PostgresBase):
    def start_round(self, live_version: str, rule: str, params: dict[str, Any], pid: int,
                    job_id: int | None = None) -> int:
        with self._transaction() as cursor:
            return cursor.execute(
                "INSERT INTO rounds (status, stage, progress, message, started_at, live_version, rule, params, pid, "
                "job_id) VALUES ('running', 'starting', 0.0, '', %s, %s, %s, %s, %s, %s) RETURNING id",
                [utc_now(), live_version, rule, Json(params), pid, job_id]).fetchone()["id"]

    def update_round(self, round_id: int, **fields: Any) -> None:
        unknown = set(fields) - set(RoundRecord.__dataclass_fields__) - {"id"}
        if unknown:
            raise ValueError(f"a round has no field(s) {sorted(unknown)}")
        if not fields:
            return
        values = {k: Json(v) if isinstance(v, dict | list | tuple) else v for k, v in fields.items()}
        with self._transaction() as cursor:
            cursor.execute(*update_statement("rounds", round_id, values))

    def round(self, round_id: int) -> RoundRecord | None:
        rows = self._rows("SELECT * FROM rounds WHERE id = %s", [round_id])
        return _round(rows[0]) if rows else None

    def rounds(self, limit: int = 50) -> list[RoundRecord]:
        return [_round(r) for r in self._rows("SELECT * FROM rounds ORDER BY id DESC LIMIT %s", [limit])]

    def last_completed_round_start(self) -> str | None:
        return self._value("SELECT max(started_at) FROM rounds WHERE status IN ('promoted', 'kept')")

    def save_round_rows(self, round_id: int, prompts: list[RoundPrompt], candidates: list[CandidateRow]) -> None:
        with self._transaction() as cursor:
            if prompts:
                cursor.executemany(_insert("round_prompts", _PROMPT_COLUMNS), [
                    [round_id, p.prompt_id, p.text, Json(list(p.turn_ids)), bool(p.replay), bool(p.gate_only)]
                    for p in prompts])
            if candidates:
                cursor.executemany(_insert("round_candidates", _CANDIDATE_COLUMNS), [
                    [round_id, *(getattr(c, name) for name in _CANDIDATE_COLUMNS[1:])] for c in candidates])

    def round_candidates(self, round_id: int) -> list[CandidateRow]:
        rows = self._rows("SELECT * FROM round_candidates WHERE round_id = %s ORDER BY prompt_id, draw", [round_id])
        return [CandidateRow.from_row(r, accepted=bool(r["accepted"])) for r in rows]

    def round_examples(self, round_id: int, accepted: bool, limit: int = 50) -> tuple[int, list[RoundExample]]:
        total = self._value("SELECT count(*) FROM round_candidates WHERE round_id = %s AND accepted = %s",
                            [round_id, bool(accepted)])
        rows = self._rows(
            f"SELECT {_EXAMPLE_FIELDS} FROM round_candidates c JOIN round_prompts p "
            "ON p.round_id = c.round_id AND p.prompt_id = c.prompt_id WHERE c.round_id = %s AND c.accepted = %s "
            "ORDER BY c.reward DESC, c.prompt_id, c.draw LIMIT %s", [round_id, bool(accepted), limit])
        return total, [RoundExample.from_row(r, accepted=bool(r["accepted"])) for r in rows]

    def training_examples(self, round_id: int | None = None) -> list[TrainingExample]:
        where, params = ("WHERE round_id = %s", [round_id]) if round_id is not None else ("", [])
        # The view has no order of its own; SQLite returns its rows in key order, so ask for that here.
        return [TrainingExample.from_row(r, turn_ids=r["turn_ids"] or [])
                for r in self._rows(f"SELECT * FROM training_examples {where} ORDER BY round_id, prompt_id",
                                    params)]
