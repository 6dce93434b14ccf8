"""The PostgreSQL log (for several processes on several machines): the same schema versions and records as the
SQLite log, selected by `log.url: postgresql://...` in rsft.yml.

A new part of the log is one mixin here (like `PostgresJobs`), the same in `log/sqlite/`, and one migration in
each `migrations.py`.
"""

from __future__ import annotations

from .bank import PostgresAnswerBank
from .base import utc_now
from .conversations import PostgresConversations
from .handoffs import PostgresHandoffs
from .jobs import PostgresJobs
from .maintenance import BackupFailed, PostgresMaintenance
from .migrations import SCHEMA_VERSION
from .rounds import PostgresRounds

__all__ = ["SCHEMA_VERSION", "BackupFailed", "PostgresLog", "utc_now"]


class PostgresLog(PostgresConversations, PostgresRounds, PostgresAnswerBank, PostgresMaintenance, PostgresJobs,
                  PostgresHandoffs):
    """Every part of the log over one PostgreSQL connection (thread-safe; one per process)."""

    def __enter__(self) -> PostgresLog:
        return self
