"""The jobs table: rounds and bank publications, queued -> running -> finished | failed (PostgreSQL).

`_fail_dead` is the one place that marks abandoned work. Starting a job and sweeping dead ones hold the jobs
advisory lock, so two processes cannot both see "nothing active" and both start an exclusive job; a job's row is
locked (FOR UPDATE) while its status is checked and changed, so a sweep never overwrites a job that just finished.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ...errors import JobBusy
from ..interfaces import IsAlive
from ..records import ABANDONED, JOB_ACTIVE, JOB_DONE, JOB_KINDS, ROUND_ABANDONED, Job
from .base import LOCK_JOBS, PostgresBase, update_statement, utc_now

_STATES = (*JOB_ACTIVE, *JOB_DONE)


class PostgresJobs(PostgresBase):
    def start_job(self, kind: str, pid: int, is_alive: IsAlive, *, exclusive: bool = True,
                  status: str = "running", message: str = "") -> Job:
        if kind not in JOB_KINDS:
            raise ValueError(f"a job's kind is one of {list(JOB_KINDS)}, not {kind!r}")
        if status not in JOB_ACTIVE:
            raise ValueError(f"a job starts as one of {list(JOB_ACTIVE)}")
        with self._transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [LOCK_JOBS])
            self._fail_dead(cursor, is_alive)
            if exclusive:
                active = self._active(cursor)
                if active:
                    raise JobBusy(f"a {active[0].kind} job is active", active[0])
            now = utc_now()
            row = cursor.execute(
                "INSERT INTO jobs (kind, status, pid, created_at, started_at, message) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
                [kind, status, pid, now, now if status == "running" else None, message]).fetchone()
        return Job.from_row(row)

    def update_job(self, job_id: int, **fields: Any) -> None:
        unknown = set(fields) - {"status", "pid", "message"}
        if unknown:
            raise ValueError(f"a job's status, pid and message can change, not {sorted(unknown)}")
        status = fields.get("status")
        if status is not None and status not in _STATES:
            raise ValueError(f"a job's status is one of {list(_STATES)}, not {status!r}")
        with self._transaction() as cursor:
            current = cursor.execute("SELECT status FROM jobs WHERE id = %s FOR UPDATE", [job_id]).fetchone()
            if current is None:
                raise KeyError(f"no job {job_id}")
            was = current["status"]
            if status is not None and was in JOB_DONE and status != was:
                raise ValueError(f"job {job_id} is {was} already")
            values = dict(fields)
            if status == "running" and was == "queued":
                values["started_at"] = utc_now()
            if status in JOB_DONE and was not in JOB_DONE:
                values["finished_at"] = utc_now()
            if values:
                cursor.execute(*update_statement("jobs", job_id, values))

    def job(self, job_id: int) -> Job | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = %s", [job_id])
        return Job.from_row(rows[0]) if rows else None

    def jobs(self, limit: int = 20, active_only: bool = False) -> list[Job]:
        where, params = ("WHERE status = ANY(%s)", [list(JOB_ACTIVE)]) if active_only else ("", [])
        return [Job.from_row(r) for r in self._rows(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT %s",
                                                    [*params, limit])]

    def fail_abandoned(self, is_alive: IsAlive) -> list[Job]:
        with self._transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [LOCK_JOBS])
            failed = self._fail_dead(cursor, is_alive)
        return [self.job(job_id) for job_id in failed]  # type: ignore[misc]

    @staticmethod
    def _active(cursor: psycopg.Cursor) -> list[Job]:
        """Active jobs, newest first, locked until the transaction ends."""
        return [Job.from_row(r) for r in cursor.execute(
            "SELECT * FROM jobs WHERE status = ANY(%s) ORDER BY id DESC FOR UPDATE", [list(JOB_ACTIVE)])]

    def _fail_dead(self, cursor: psycopg.Cursor, is_alive: IsAlive) -> list[int]:
        """Inside a transaction: active jobs whose process is gone, and what they ran, become failed."""
        dead = [job.id for job in self._active(cursor) if not is_alive(job.pid)]
        now = utc_now()
        for job_id in dead:
            cursor.execute("UPDATE jobs SET status = 'failed', finished_at = %s, message = %s WHERE id = %s",
                           [now, ABANDONED, job_id])
            cursor.execute("UPDATE rounds SET status = 'failed', finished_at = %s, reason = %s "
                           "WHERE job_id = %s AND status = 'running'", [now, ROUND_ABANDONED, job_id])
            cursor.execute("UPDATE bank_publications SET status = 'failed', finished_at = %s, message = %s "
                           "WHERE job_id = %s AND status = 'running'", [now, ABANDONED, job_id])
        return dead
