"""The PostgreSQL connection behind the log: one per process (thread-safe), write transactions with explicit locks.

SQLite's `BEGIN IMMEDIATE` serialises every writer of the file, which makes each check-then-write safe. Here
writers run concurrently under READ COMMITTED, so each check-then-write takes the narrowest lock that makes it
safe instead: a transaction-scoped advisory lock per sender (rating cap, ownership, forget), one for the jobs
table (the exclusive-job check), one for migrations, and row locks (`FOR UPDATE`) where a row is re-checked.

Texts are stored verbatim: PostgreSQL's text cannot hold NUL, which SQLite stores, so the connection's str
adapters escape NUL (and the escape character itself) on the way in and restore them on the way out.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.string import StrDumperUnknown, TextLoader

from ...errors import LogUnavailable
from ..interfaces import utc_now
from .migrations import migrate

__all__ = ["PostgresBase", "update_statement", "utc_now"]

# Advisory lock namespaces (the first key of pg_advisory_xact_lock(int, int)); the second key is a hash or 0.
LOCK_SENDER, LOCK_JOBS, LOCK_PRUNE_ATTEMPTS = 0x7273_0001, 0x7273_0002, 0x7273_0003
LOCK_TIMEOUT = "30s"  # as long as SQLite's busy timeout: a writer waits this long for a lock, then fails

# SQLSTATEs of a server that ended the session (admin_shutdown, crash_shutdown, cannot_connect_now); class 08 is
# a connection exception, and an error without a SQLSTATE never came from the server (a socket that closed).
_SESSION_ENDED = ("57P01", "57P02", "57P03")

_ESCAPE = "\ufdd0"  # a Unicode noncharacter: never in real text, so escaping it costs nothing in practice
_ESCAPED = re.compile(f"{_ESCAPE}([01])")


def _store(text: str) -> str:
    return text.replace(_ESCAPE, _ESCAPE + "1").replace("\x00", _ESCAPE + "0") if (
        "\x00" in text or _ESCAPE in text) else text


def _restore(text: str) -> str:
    return _ESCAPED.sub(lambda m: "\x00" if m[1] == "0" else _ESCAPE, text) if _ESCAPE in text else text


class _VerbatimStrDumper(StrDumperUnknown):
    def dump(self, obj: str) -> bytes:
        return _store(obj).encode(self._encoding)


class _VerbatimTextLoader(TextLoader):
    def load(self, data: Any) -> str:
        return _restore(super().load(data))


def _connect(url: str) -> psycopg.Connection:
    try:
        connection = psycopg.connect(url, autocommit=True, row_factory=dict_row)
    except psycopg.OperationalError as exc:  # the message names host and database, never the password
        raise LogUnavailable(f"cannot reach the PostgreSQL log: {exc}".strip()) from exc
    connection.adapters.register_dumper(str, _VerbatimStrDumper)
    for name in ("text", "varchar"):
        connection.adapters.register_loader(name, _VerbatimTextLoader)
    connection.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    return connection


def update_statement(table: str, row_id: int, values: dict[str, Any]) -> tuple[sql.Composed, list[Any]]:
    """UPDATE table SET ... WHERE id = row_id, with the column names quoted (callers validate them)."""
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in values)
    return (sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), assignments),
            [*values.values(), row_id])


class PostgresBase:
    """Thread-safe access to one PostgreSQL database; reconnects (for the next call) after the server restarts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._shut = False  # close() was called: a closed connection is then not reopened
        self._lock = threading.RLock()
        with self._lock:
            self.conn = _connect(url)
            try:
                migrate(self.conn)
            except BaseException:
                self.conn.close()
                raise

    def close(self) -> None:
        with self._lock:
            self._shut = True
            self.conn.close()

    def __enter__(self) -> PostgresBase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _connection(self) -> psycopg.Connection:
        """The connection, reopened when the old one was lost (a server restart, `_lost`), never after `close()`;
        call with the lock held."""
        if self.conn.closed and not self._shut:
            self.conn = _connect(self.url)
        return self.conn

    def _lost(self, error: psycopg.OperationalError) -> bool:
        """Whether `error` means the connection is gone; then it is closed, for `_connection` to open a new one.

        `broken` alone is not enough: when the server ends the session while a statement is on its way, psycopg can
        raise "connection socket closed" with libpq still reporting the connection as fine."""
        if self.conn.closed and not self._shut:
            return True
        state = error.sqlstate
        if state is None or state.startswith("08") or state in _SESSION_ENDED:
            self.conn.close()
            return True
        return False

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """A read. Reads are repeated once on a new connection when the old one broke (the server restarted or
        dropped it); writes only when their BEGIN found it broken (`_transaction`), as one may have committed."""
        with self._lock:
            try:
                return self._connection().execute(sql, params or []).fetchall()
            except psycopg.OperationalError as error:
                if not self._lost(error):
                    raise
                return self._connection().execute(sql, params or []).fetchall()

    def _value(self, sql: str, params: list[Any] | None = None) -> Any:
        rows = self._rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor]:
        """One transaction on this process's connection; the caller takes the locks its checks need.

        A BEGIN that finds the connection dead (the server restarted since the last call) is sent again on a new
        connection: nothing of the transaction reached the server. A connection lost after that is not retried."""
        with self._lock, ExitStack() as stack:
            try:
                stack.enter_context(self._connection().transaction())
            except psycopg.OperationalError as error:
                if not self._lost(error):
                    raise
                stack.enter_context(self._connection().transaction())
            yield stack.enter_context(self.conn.cursor())

    @staticmethod
    def _lock_sender(cursor: psycopg.Cursor, sender_id: str) -> None:
        """Serialise the writes about one sender (their ratings and their cap, forgetting them) across processes."""
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_SENDER, sender_id])
