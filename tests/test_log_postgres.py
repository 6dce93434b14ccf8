"""PostgreSQL-only facts of the log: the same schema as SQLite, and check-then-write that holds when several
processes (here: several connections on threads) write at once. The behaviour itself is the contract suite's
(tests/test_log_contract.py), which runs on both backends."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import psycopg
import pytest

from rsft_plugin.errors import JobBusy, LogUnavailable, RatingRefused
from rsft_plugin.log import SCHEMA_VERSION, TurnRecord, open_postgres, open_sqlite
from rsft_plugin.log.postgres import migrations as pg_migrations
from rsft_plugin.log.sqlite import migrations as sqlite_migrations


def ALIVE(pid: int | None) -> bool:  # noqa: N802 - reads like the contract suite's ALIVE
    return True


def _turn(sender: str = "alice", text: str = "where is my order") -> TurnRecord:
    return TurnRecord(sender, "m1", text, "track_order", "track_order", "You can ...", "v0001", 0.6, 0.4,
                      [{"answer_id": "track_order", "cosine": 0.6}], 10.0)


def _all_at_once(workers: int, work: Callable[[int], object]) -> list[object]:
    """Run work(0..workers-1) on threads released together; each result or the exception it raised."""
    barrier = threading.Barrier(workers)
    results: list[object] = [None] * workers

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = work(n)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each worker met
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _columns_sqlite(path) -> dict[str, set[str]]:
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                          "AND name NOT LIKE 'sqlite_%'")]
        return {name: {r[1] for r in db.execute(f"PRAGMA table_info({name})")} for name in names}


def _columns_postgres(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as db:
        columns: dict[str, set[str]] = {}
        for table, column in db.execute("SELECT table_name, column_name FROM information_schema.columns "
                                        "WHERE table_schema = 'public'"):
            columns.setdefault(table, set()).add(column)
        return columns


def test_postgres_has_the_sqlite_schema_version_tables_and_columns(tmp_path, postgres_url):
    assert pg_migrations.SCHEMA_VERSION == sqlite_migrations.SCHEMA_VERSION == SCHEMA_VERSION
    assert set(pg_migrations._MIGRATIONS) == set(sqlite_migrations._MIGRATIONS)
    open_sqlite(tmp_path / "rsft.db").close()
    open_postgres(postgres_url).close()
    in_postgres = _columns_postgres(postgres_url)
    in_postgres["turns"].discard("seq")  # PostgreSQL's stand-in for SQLite's rowid
    assert in_postgres == _columns_sqlite(tmp_path / "rsft.db")
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_processes_starting_together_migrate_once(postgres_url):
    opened = _all_at_once(6, lambda n: open_postgres(postgres_url))
    try:
        assert all(not isinstance(log, Exception) for log in opened), opened
        opened[0].log_turn(_turn())
        assert {log.count("turns") for log in opened} == {1}
    finally:
        for log in opened:
            if not isinstance(log, Exception):
                log.close()


def test_the_rating_cap_holds_when_one_sender_rates_through_many_processes_at_once(postgres_log_url):
    logs = [open_postgres(postgres_log_url) for _ in range(8)]
    try:
        turns = [logs[0].log_turn(_turn(text=f"q{n}")) for n in range(8)]
        results = _all_at_once(8, lambda n: logs[n].rate(turns[n], "alice", 1, max_per_minute=3))
        refused = [r for r in results if isinstance(r, RatingRefused)]
        assert len(refused) == 5 and all("a lot of ratings" in str(r) for r in refused), results
        assert logs[0].count("ratings") == 3
    finally:
        for log in logs:
            log.close()


def test_only_one_exclusive_job_starts_when_many_processes_try_at_once(postgres_log_url):
    logs = [open_postgres(postgres_log_url) for _ in range(6)]
    try:
        for _ in range(5):  # a few races, so that a missing lock shows even when one race happens to go well
            results = _all_at_once(6, lambda n: logs[n].start_job("round", 1000 + n, ALIVE))
            started = [r for r in results if not isinstance(r, Exception)]
            assert len(started) == 1 and all(isinstance(r, JobBusy) for r in results if r not in started), results
            assert [j.id for j in logs[0].jobs(active_only=True)] == [started[0].id]
            logs[0].update_job(started[0].id, status="finished")
    finally:
        for log in logs:
            log.close()


def test_a_sweep_never_fails_a_job_that_finished_meanwhile(postgres_log_url):
    logs = [open_postgres(postgres_log_url) for _ in range(2)]
    try:
        job = logs[0].start_job("round", 4242, ALIVE)

        def work(n: int) -> object:
            if n == 0:
                return logs[0].update_job(job.id, status="finished", message="promoted")
            return logs[1].fail_abandoned(lambda pid: False)

        _all_at_once(2, work)
        done = logs[0].job(job.id)
        # Either the sweep came first (failed, then finishing is refused) or the finish did (finished stays).
        assert (done.status, done.message) in {("finished", "promoted"), ("failed", done.message)}
        assert done.status == "finished" or "ended without finishing" in done.message
    finally:
        for log in logs:
            log.close()


def test_forget_and_redaction_hold_against_a_concurrent_writer(postgres_log_url):
    logs = [open_postgres(postgres_log_url) for _ in range(2)]
    try:
        mine = [logs[0].log_turn(_turn(text=f"mail a@b.example {n}")) for n in range(20)]

        def work(n: int) -> object:
            if n == 0:
                return [logs[0].rate(turn_id, "alice", 1) for turn_id in mine]
            return logs[1].forget("alice")

        results = _all_at_once(2, work)
        assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, RatingRefused)], results
        assert logs[0].count("turns") == 0 and logs[0].count("ratings") == 0  # no rating outlived its turn
        other = logs[0].log_turn(_turn(sender="bob", text="mail a@b.example"))
        counts = _all_at_once(2, lambda n: logs[n].redact_older_than("9999", lambda t: t.replace("a@b", "[E]")))
        assert sorted(counts) == [0, 1] and logs[1].turn(other).user_text == "mail [E].example"
    finally:
        for log in logs:
            log.close()


def test_postgres_migrates_a_version_3_database(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        with db.cursor() as cursor:
            for version in (1, 2, 3):
                pg_migrations._MIGRATIONS[version](cursor)
        db.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        db.execute("INSERT INTO turns (id, sender_id, user_text, answer_id, model_version, created_at, top_k) "
                   "VALUES ('t1', 's', 'q', 'track_order', 'v1', '2025-01-01', '[]')")
        db.execute("INSERT INTO ratings VALUES ('t1', 's', 1, 'x', 'x')")
        db.execute("INSERT INTO rounds (id, status, stage, progress, message, started_at, live_version, rule, pid) "
                   "VALUES (1, 'running', 'sample', 0.1, '', '2025-01-01', 'v1', 'statistical', 999999)")
        db.execute("INSERT INTO round_prompts VALUES (1, 0, 'q', '[\"t1\"]', false, false)")
        db.execute("INSERT INTO round_candidates (round_id, prompt_id, draw, answer_id, topic, q, reward, "
                   "accept_probability, accepted, rule, sampled_by) "
                   "VALUES (1, 0, 0, 'track_order', 'track_order', 0.5, 1.0, 1.0, true, 'statistical', 'v1')")
    log = open_postgres(postgres_url)
    try:
        assert log.turn("t1").reply_key == "track_order" and log.turn("t1").rating == 1
        assert [e.candidate_key for e in log.training_examples(1)] == ["track_order"]
        assert [j.kind for j in log.jobs(active_only=True)] == ["round"]  # the running round got a job
        log.fail_abandoned(lambda pid: False)
        assert log.round(1).status == "failed"
        log.log_turn(TurnRecord("s", None, "q", None, "generated", "a", "v1", 0.5, 0.5, [], 1.0, reply_key="k"))
        assert log.turn("t1").writing is None  # schema 8: turns from before it were not written
    finally:
        log.close()


def test_the_log_reconnects_after_the_server_dropped_its_connection(postgres_log_url):
    log = open_postgres(postgres_log_url)
    try:
        log.log_turn(_turn())
        _drop_connection(postgres_log_url, log)
        assert log.count("turns") == 1  # a read is repeated on a new connection
        _drop_connection(postgres_log_url, log)
        log.log_turn(_turn())  # a write whose BEGIN found the connection dead is begun again on a new one
        assert log.count("turns") == 2
        with pytest.raises(psycopg.OperationalError), log._transaction() as cursor:
            cursor.execute("SELECT 1")
            _drop_connection(postgres_log_url, log)  # lost mid-transaction: not repeated (it might have committed)
            cursor.execute("SELECT 1")
        log.log_turn(_turn())  # ... the next one reconnects
        assert log.count("turns") == 3
    finally:
        log.close()


class _SocketClosedOnce:
    """The real connection, except that its next BEGIN or statement fails as psycopg 3.3 sometimes fails when the
    server ends the session while a statement is on its way: "connection socket closed", `broken` still False."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection, self.failed = connection, False

    def _fail_once(self) -> None:
        if not self.failed:
            self.failed = True
            raise psycopg.OperationalError("connection socket closed")

    def transaction(self):
        self._fail_once()
        return self.connection.transaction()

    def execute(self, *args, **kwargs):
        self._fail_once()
        return self.connection.execute(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.connection, name)


@pytest.mark.parametrize("call", ["read", "write"])
def test_a_socket_that_closed_without_the_connection_reported_broken_is_reconnected(postgres_log_url, call):
    log = open_postgres(postgres_log_url)
    try:
        log.log_turn(_turn())
        dying = log.conn = _SocketClosedOnce(log.conn)
        assert not dying.broken
        if call == "read":
            assert log.count("turns") == 1
        else:
            log.log_turn(_turn())
            assert log.count("turns") == 2
        assert dying.failed and log.conn is not dying and dying.connection.closed  # the old one is closed, not leaked
    finally:
        log.close()
    with pytest.raises(psycopg.OperationalError):  # a log that was closed stays closed: it does not reconnect
        log.count("turns")


def test_a_refused_statement_on_a_live_connection_is_not_repeated(postgres_log_url):
    log = open_postgres(postgres_log_url)
    try:
        connection = log.conn
        with pytest.raises(psycopg.errors.LockNotAvailable):  # an OperationalError from the server: not a lost link
            log._rows("DO $$ BEGIN RAISE EXCEPTION 'busy' USING ERRCODE = 'lock_not_available'; END $$")
        assert log.conn is connection and not connection.closed
    finally:
        log.close()


def _drop_connection(url: str, log) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [log.conn.info.backend_pid])


def test_an_unreachable_server_is_a_clear_error_without_the_password(postgres_server):
    from rsft_plugin.ports import free_port

    url = f"postgresql://rsft:hunter2@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(LogUnavailable, match="cannot reach the PostgreSQL log") as error:
        open_postgres(url)
    assert "hunter2" not in str(error.value)
    with pytest.raises(LogUnavailable) as wrong_password:
        open_postgres(postgres_server.url().replace(postgres_server.password, "hunter2"))
    assert "hunter2" not in str(wrong_password.value)
