"""The jobs table: rounds and bank publications, queued -> running -> finished | failed (SQLite).

`_fail_dead` is the one place that marks abandoned work: the job, and the round or publication it ran.
"""

from __future__ import annotations

from typing import Any

from ...errors import JobBusy
from ..interfaces import IsAlive
from ..records import ABANDONED, JOB_ACTIVE, JOB_DONE, JOB_KINDS, ROUND_ABANDONED, Job
from .base import SqliteBase, utc_now

_STATES = (*JOB_ACTIVE, *JOB_DONE)


class SqliteJobs(SqliteBase):
    def start_job(self, kind: str, pid: int, is_alive: IsAlive, *, exclusive: bool = True,
                  status: str = "running", message: str = "") -> Job:
        if kind not in JOB_KINDS:
            raise ValueError(f"a job's kind is one of {list(JOB_KINDS)}, not {kind!r}")
        if status not in JOB_ACTIVE:
            raise ValueError(f"a job starts as one of {list(JOB_ACTIVE)}")
        with self._transaction():
            self._fail_dead(is_alive)
            if exclusive:
                active = self._active()
                if active:
                    raise JobBusy(f"a {active[0].kind} job is active", active[0])
            now = utc_now()
            job_id = self.db["jobs"].insert({
                "kind": kind, "status": status, "pid": pid, "created_at": now,
                "started_at": now if status == "running" else None, "message": message}).last_pk
        return self.job(job_id)  # type: ignore[return-value]

    def update_job(self, job_id: int, **fields: Any) -> None:
        unknown = set(fields) - {"status", "pid", "message"}
        if unknown:
            raise ValueError(f"a job's status, pid and message can change, not {sorted(unknown)}")
        status = fields.get("status")
        if status is not None and status not in _STATES:
            raise ValueError(f"a job's status is one of {list(_STATES)}, not {status!r}")
        with self._transaction():
            current = self.db.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
            if current is None:
                raise KeyError(f"no job {job_id}")
            if status is not None and current[0] in JOB_DONE and status != current[0]:
                raise ValueError(f"job {job_id} is {current[0]} already")
            values = dict(fields)
            if status == "running" and current[0] == "queued":
                values["started_at"] = utc_now()
            if status in JOB_DONE and current[0] not in JOB_DONE:
                values["finished_at"] = utc_now()
            self.db["jobs"].update(job_id, values)

    def job(self, job_id: int) -> Job | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", [job_id])
        return Job.from_row(rows[0]) if rows else None

    def jobs(self, limit: int = 20, active_only: bool = False) -> list[Job]:
        where = f"WHERE status IN {JOB_ACTIVE}" if active_only else ""
        return [Job.from_row(r) for r in self._rows(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?", [limit])]

    def fail_abandoned(self, is_alive: IsAlive) -> list[Job]:
        with self._transaction():
            failed = self._fail_dead(is_alive)
        return [self.job(job_id) for job_id in failed]  # type: ignore[misc]

    def _active(self) -> list[Job]:
        return [Job.from_row(r) for r in self.db.query(
            f"SELECT * FROM jobs WHERE status IN {JOB_ACTIVE} ORDER BY id DESC")]

    def _fail_dead(self, is_alive: IsAlive) -> list[int]:
        """Inside a transaction: active jobs whose process is gone, and what they ran, become failed."""
        dead = [job.id for job in self._active() if not is_alive(job.pid)]
        now = utc_now()
        for job_id in dead:
            self.db.execute("UPDATE jobs SET status = 'failed', finished_at = ?, message = ? WHERE id = ?",
                            [now, ABANDONED, job_id])
            self.db.execute("UPDATE rounds SET status = 'failed', finished_at = ?, reason = ? "
                            "WHERE job_id = ? AND status = 'running'", [now, ROUND_ABANDONED, job_id])
            self.db.execute("UPDATE bank_publications SET status = 'failed', finished_at = ?, message = ? "
                            "WHERE job_id = ? AND status = 'running'", [now, ABANDONED, job_id])
        return dead
