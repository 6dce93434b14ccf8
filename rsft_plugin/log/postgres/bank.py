"""Answer-bank revisions and their publications (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from ..records import AnswerRevision, Publication
from .base import PostgresBase, update_statement, utc_now


class PostgresAnswerBank(PostgresBase):
    def add_answer_revision(self, answer_id: str, topic: str, category: str, text: str, action: str,
                            note: str = "") -> AnswerRevision:
        if action not in ("add", "edit"):
            raise ValueError("action must be 'add' or 'edit'")
        with self._transaction() as cursor:
            row = cursor.execute(
                "INSERT INTO answer_revisions (answer_id, topic, category, text, action, note, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *",
                [answer_id, topic, category, text, action, note, utc_now()]).fetchone()
        return AnswerRevision.from_row(row)

    def answer_revisions(self, answer_id: str | None = None, limit: int = 500) -> list[AnswerRevision]:
        where, params = ("WHERE answer_id = %s", [answer_id]) if answer_id is not None else ("", [])
        return [AnswerRevision.from_row(r) for r in self._rows(
            f"SELECT * FROM answer_revisions {where} ORDER BY id DESC LIMIT %s", [*params, limit])]

    def latest_answer_revisions(self) -> list[AnswerRevision]:
        return [AnswerRevision.from_row(r) for r in self._rows(
            "SELECT a.* FROM answer_revisions a JOIN (SELECT answer_id, max(id) AS newest, min(id) AS oldest "
            "FROM answer_revisions GROUP BY answer_id) n ON a.id = n.newest ORDER BY n.oldest")]

    def start_publication(self, job_id: int) -> int:
        with self._transaction() as cursor:
            return cursor.execute(
                "INSERT INTO bank_publications (status, started_at, pid, message, job_id) "
                "VALUES ('running', %s, (SELECT pid FROM jobs WHERE id = %s), 'starting', %s) RETURNING id",
                [utc_now(), job_id, job_id]).fetchone()["id"]

    def update_publication(self, publication_id: int, **fields: Any) -> None:
        unknown = set(fields) - set(Publication.__dataclass_fields__) - {"id"}
        if unknown:
            raise ValueError(f"a publication has no field(s) {sorted(unknown)}")
        if not fields:
            return
        with self._transaction() as cursor:
            cursor.execute(*update_statement("bank_publications", publication_id, fields))

    def publication(self, publication_id: int) -> Publication | None:
        rows = self._rows("SELECT * FROM bank_publications WHERE id = %s", [publication_id])
        return Publication.from_row(rows[0]) if rows else None

    def publications(self, limit: int = 10) -> list[Publication]:
        return [Publication.from_row(r) for r in self._rows(
            "SELECT * FROM bank_publications ORDER BY id DESC LIMIT %s", [limit])]
