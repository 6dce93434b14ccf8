"""Answer-bank revisions and their publications (SQLite)."""

from __future__ import annotations

from typing import Any

from ..records import AnswerRevision, Publication
from .base import SqliteBase, utc_now


class SqliteAnswerBank(SqliteBase):
    def add_answer_revision(self, answer_id: str, topic: str, category: str, text: str, action: str,
                            note: str = "") -> AnswerRevision:
        if action not in ("add", "edit"):
            raise ValueError("action must be 'add' or 'edit'")
        with self._transaction():
            revision_id = self.db["answer_revisions"].insert({
                "answer_id": answer_id, "topic": topic, "category": category, "text": text, "action": action,
                "note": note, "created_at": utc_now()}).last_pk
            return AnswerRevision.from_row(dict(self.db["answer_revisions"].get(revision_id)))

    def answer_revisions(self, answer_id: str | None = None, limit: int = 500) -> list[AnswerRevision]:
        where, params = ("WHERE answer_id = ?", [answer_id]) if answer_id is not None else ("", [])
        return [AnswerRevision.from_row(r) for r in self._rows(
            f"SELECT * FROM answer_revisions {where} ORDER BY id DESC LIMIT ?", [*params, limit])]

    def latest_answer_revisions(self) -> list[AnswerRevision]:
        return [AnswerRevision.from_row(r) for r in self._rows(
            "SELECT a.* FROM answer_revisions a JOIN (SELECT answer_id, max(id) AS newest, min(id) AS oldest "
            "FROM answer_revisions GROUP BY answer_id) n ON a.id = n.newest ORDER BY n.oldest")]

    def start_publication(self, job_id: int) -> int:
        with self._transaction():
            pid = self.db.execute("SELECT pid FROM jobs WHERE id = ?", [job_id]).fetchone()
            return self.db["bank_publications"].insert({
                "status": "running", "started_at": utc_now(), "pid": pid[0] if pid else None, "message": "starting",
                "job_id": job_id}).last_pk

    def update_publication(self, publication_id: int, **fields: Any) -> None:
        unknown = set(fields) - set(Publication.__dataclass_fields__) - {"id"}
        if unknown:
            raise ValueError(f"a publication has no field(s) {sorted(unknown)}")
        with self._transaction():
            self.db["bank_publications"].update(publication_id, fields)

    def publication(self, publication_id: int) -> Publication | None:
        rows = self._rows("SELECT * FROM bank_publications WHERE id = ?", [publication_id])
        return Publication.from_row(rows[0]) if rows else None

    def publications(self, limit: int = 10) -> list[Publication]:
        return [Publication.from_row(r) for r in self._rows(
            "SELECT * FROM bank_publications ORDER BY id DESC LIMIT ?", [limit])]
