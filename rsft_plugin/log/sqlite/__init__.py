"""The embedded SQLite log (the default backend): one file, WAL mode, readable in Datasette as it is."""

from __future__ import annotations

from .bank import SqliteAnswerBank
from .base import utc_now
from .conversations import SqliteConversations
from .handoffs import SqliteHandoffs
from .jobs import SqliteJobs
from .maintenance import SqliteMaintenance
from .migrations import SCHEMA_VERSION
from .rounds import SqliteRounds

__all__ = ["SCHEMA_VERSION", "SqliteLog", "utc_now"]


class SqliteLog(SqliteConversations, SqliteRounds, SqliteAnswerBank, SqliteMaintenance, SqliteJobs,
                SqliteHandoffs):
    """Every part of the log over one SQLite connection (thread-safe; one per process)."""

    def __enter__(self) -> SqliteLog:
        return self
