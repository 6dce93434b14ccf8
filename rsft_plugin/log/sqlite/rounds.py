"""Rounds, their prompts and candidates, and the training_examples view (SQLite)."""

from __future__ import annotations

import json
from typing import Any

from ..records import CandidateRow, RoundExample, RoundPrompt, RoundRecord, TrainingExample
from .base import SqliteBase, to_json, utc_now

_JSON_FIELDS = ("params", "stats", "stage_seconds")
_EXAMPLE_FIELDS = ("c.prompt_id, c.draw, p.text AS prompt, c.candidate_key, c.candidate_text, c.answer_id, c.topic, "
                   "c.q, c.cosine, c.similarity, c.rating_up, c.rating_down, c.rating, c.reward, "
                   "c.accept_probability, c.accepted, c.sampled_by")


def _round(row: dict[str, Any]) -> RoundRecord:
    return RoundRecord.from_row(row, **{k: json.loads(row[k]) if row.get(k) else {} for k in _JSON_FIELDS},
                                message=row.get("message") or "")


class SqliteRounds(SqliteBase):
    def start_round(self, live_version: str, rule: str, params: dict[str, Any], pid: int,
                    job_id: int | None = None) -> int:
        with self._transaction():
            return self.db["rounds"].insert({
                "status": "running", "stage": "starting", "progress": 0.0, "message": "", "started_at": utc_now(),
                "live_version": live_version, "rule": rule, "params": json.dumps(params), "pid": pid,
                "job_id": job_id,
            }).last_pk

    def update_round(self, round_id: int, **fields: Any) -> None:
        unknown = set(fields) - set(RoundRecord.__dataclass_fields__) - {"id"}
        if unknown:
            raise ValueError(f"a round has no field(s) {sorted(unknown)}")
        values = {k: to_json(v) for k, v in fields.items()}
        with self._transaction():
            self.db["rounds"].update(round_id, values)

    def round(self, round_id: int) -> RoundRecord | None:
        rows = self._rows("SELECT * FROM rounds WHERE id = ?", [round_id])
        return _round(rows[0]) if rows else None

    def rounds(self, limit: int = 50) -> list[RoundRecord]:
        return [_round(r) for r in self._rows("SELECT * FROM rounds ORDER BY id DESC LIMIT ?", [limit])]

    def last_completed_round_start(self) -> str | None:
        return self._value("SELECT max(started_at) FROM rounds WHERE status IN ('promoted', 'kept')")

    def save_round_rows(self, round_id: int, prompts: list[RoundPrompt], candidates: list[CandidateRow]) -> None:
        with self._transaction():
            self.db["round_prompts"].insert_all([
                {**p.to_dict(), "round_id": round_id, "turn_ids": json.dumps(list(p.turn_ids)),
                 "replay": int(p.replay), "gate_only": int(p.gate_only)} for p in prompts])
            self.db["round_candidates"].insert_all([
                {**c.to_dict(), "round_id": round_id, "accepted": int(c.accepted)} for c in candidates])

    def round_candidates(self, round_id: int) -> list[CandidateRow]:
        rows = self._rows("SELECT * FROM round_candidates WHERE round_id = ? ORDER BY prompt_id, draw", [round_id])
        return [CandidateRow.from_row(r, accepted=bool(r["accepted"])) for r in rows]

    def round_examples(self, round_id: int, accepted: bool, limit: int = 50) -> tuple[int, list[RoundExample]]:
        total = self._value("SELECT count(*) FROM round_candidates WHERE round_id = ? AND accepted = ?",
                            [round_id, int(accepted)])
        rows = self._rows(
            f"SELECT {_EXAMPLE_FIELDS} FROM round_candidates c JOIN round_prompts p "
            "ON p.round_id = c.round_id AND p.prompt_id = c.prompt_id WHERE c.round_id = ? AND c.accepted = ? "
            "ORDER BY c.reward DESC, c.prompt_id, c.draw LIMIT ?", [round_id, int(accepted), limit])
        return total, [RoundExample.from_row(r, accepted=bool(r["accepted"])) for r in rows]

    def training_examples(self, round_id: int | None = None) -> list[TrainingExample]:
        where, params = ("WHERE round_id = ?", [round_id]) if round_id is not None else ("", [])
        return [TrainingExample.from_row(r, turn_ids=json.loads(r["turn_ids"] or "[]"))
                for r in self._rows(f"SELECT * FROM training_examples {where}", params)]
