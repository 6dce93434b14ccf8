"""The SQLite connection behind the log: one per process, WAL, write transactions that take the lock up front."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from ..interfaces import utc_now
from .migrations import migrate

__all__ = ["SqliteBase", "to_json", "utc_now"]


def to_json(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list | tuple) else value


class SqliteBase:
    """Thread-safe access to one SQLite file. WAL lets other processes read (Datasette, `sqlite-utils`) meanwhile."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self.db = sqlite_utils.Database(connection)
        self._lock = threading.RLock()
        with self._lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            migrate(self.db, self._transaction)

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def __enter__(self) -> SqliteBase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params or []))

    def _value(self, sql: str, params: list[Any] | None = None) -> Any:
        with self._lock:
            row = self.db.execute(sql, params or []).fetchone()
        return row[0] if row else None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the write lock up front, so a check-then-write cannot race another process."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
