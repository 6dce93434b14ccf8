"""The operator's log commands on both backends, through the real CLI: `rsft forget`, `rsft retention`,
`rsft backup` (SQLite's backup API; pg_dump for PostgreSQL), exports, and `rsft config` hiding the URL's password.

Each test gets a config whose log is an SQLite file (`paths.db`) or a new PostgreSQL database (`log.url`).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from rsft_plugin.cli import main
from rsft_plugin.config import load_config
from rsft_plugin.exports import export_lines
from rsft_plugin.log import CandidateRow, Log, PostgresLog, RoundPrompt, SqliteLog, TurnRecord, open_log
from rsft_plugin.pgserver import pg_binary

from .conftest import write_config

OLD = "2000-01-01T00:00:00.000+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def config_path(request, tmp_path) -> Path:
    log = {"url": request.getfixturevalue("postgres_log_url")} if request.param == "postgres" else {}
    return write_config(tmp_path, log=log)


def _open(config_path: Path) -> Log:
    return open_log(load_config(config_path))


def _rsft(config_path: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config_path), *args])


def _turn(sender: str, text: str, answer_text: str = "we sent it to you") -> TurnRecord:
    return TurnRecord(sender, None, text, "track_order", "track_order", answer_text, "v0001", 0.6, 0.4, [], 5.0)


def _backdate(log: Log, turn_id: str) -> None:
    """Make a turn old (no interface writes created_at: this is the test reaching into storage)."""
    if isinstance(log, PostgresLog):
        log.conn.execute("UPDATE turns SET created_at = %s WHERE id = %s", [OLD, turn_id])
    else:
        log.db.execute("UPDATE turns SET created_at = ? WHERE id = ?", [OLD, turn_id])


def test_the_config_picks_the_backend(config_path):
    config = load_config(config_path)
    with open_log(config) as log:
        assert isinstance(log, PostgresLog if config.log.url else SqliteLog)


def test_forget_command_removes_a_customer_everywhere(config_path):
    with _open(config_path) as log:
        mine = [log.log_turn(_turn("alice", f"q{n}")) for n in range(2)]
        theirs = log.log_turn(_turn("bob", "bob's"))
        log.rate(mine[0], "alice", 1)
        round_id = log.start_round("v0001", "statistical", {}, 1)
        log.save_round_rows(round_id, [RoundPrompt(0, "p0", [mine[0]]), RoundPrompt(1, "p1", [mine[1], theirs])],
                            [CandidateRow(n, 0, "k", None, "k", "t", 0.5, 0.5, 0.5, 1.0, 0.0, 0.6, 1.0, 0.5, True,
                                          "statistical", "v0001") for n in range(2)])
    result = _rsft(config_path, "forget", "alice", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted 2 turns, 1 ratings, 0 signals and 0 hand-offs of 'alice'; 1 recorded round prompts" in result.output
    with _open(config_path) as log:
        assert log.conversation("alice") == [] and log.turn(theirs) is not None
        assert [e.turn_ids for e in log.training_examples(round_id)] == [[theirs]]


def test_retention_command_redacts_old_raw_text_only(config_path):
    with _open(config_path) as log:
        old = log.log_turn(_turn("s", "mail me: a@b.example", "sent to a@b.example"))
        _backdate(log, old)
        new = log.log_turn(_turn("s", "mail me: c@d.example"))
    result = _rsft(config_path, "retention")
    assert result.exit_code == 0 and "redacted 1 turns" in result.output, result.output
    with _open(config_path) as log:
        assert (log.turn(old).user_text, log.turn(old).answer_text) == ("mail me: [EMAIL]", "sent to [EMAIL]")
        assert log.turn(new).user_text == "mail me: c@d.example" and log.turn(old).redacted


def test_exports_stream_every_turn_and_example_redacted(config_path):
    with _open(config_path) as log:
        ids = [log.log_turn(_turn(f"s{n}", f"order {n}, mail x{n}@y.example")) for n in range(450)]
        log.rate(ids[0], "s0", 0)
        round_id = log.start_round("v0001", "statistical", {}, 1)
        log.save_round_rows(round_id, [RoundPrompt(0, "card 4111 1111 1111 1111", ids[:2])],
                            [CandidateRow(0, 0, "k", "=cmd()", None, "t", 0.5, None, None, None, None, None, 1.0,
                                          0.5, True, "statistical", "v0001")])
        turns = [json.loads(line) for line in export_lines(log, "conversations", "jsonl")]
        examples = list(csv.DictReader(io.StringIO("".join(export_lines(log, "training-examples", "csv")))))
    assert [t["turn_id"] for t in turns] == ids and turns[0]["rating"] == 0
    assert turns[7]["question"] == "order 7, mail [EMAIL]"
    assert len(examples) == 1 and examples[0]["prompt"] == "card [CARD]" and examples[0]["candidate_text"] == "'=cmd()"
    assert json.loads(examples[0]["turn_ids"]) == ids[:2]


def test_config_command_never_prints_the_password(tmp_path):
    path = write_config(tmp_path, log={"url": "postgresql://rsft:hunter2@db.example:5432/rsft?password=hunter2"})
    result = _rsft(path, "config")
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "postgresql://rsft:***@db.example:5432/rsft" in result.output


def test_a_log_url_that_is_not_postgresql_is_refused(tmp_path):
    result = _rsft(write_config(tmp_path, log={"url": "mysql://root:hunter2@db/rsft"}), "config")
    assert result.exit_code == 1 and "log.url" in result.output and "hunter2" not in result.output


def test_an_unreachable_postgresql_log_is_one_clear_line(tmp_path):
    from rsft_plugin.ports import free_port

    path = write_config(tmp_path, log={"url": f"postgresql://rsft:hunter2@127.0.0.1:{free_port()}/rsft"})
    result = _rsft(path, "forget", "alice", "--yes")
    assert result.exit_code == 1 and "cannot reach the PostgreSQL log" in result.output
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_postgresql_backup_is_a_pg_dump_that_restores(tmp_path, postgres_server, postgres_log_url):
    config_path = write_config(tmp_path, log={"url": postgres_log_url})
    with _open(config_path) as log:
        for n in range(30):
            log.rate(log.log_turn(_turn(f"s{n}", "q\x00 with a NUL")), f"s{n}", n % 2)
    target = tmp_path / "backups" / "rsft.dump"
    stop, writer_log = threading.Event(), _open(config_path)

    def keep_writing() -> None:  # the bot keeps answering during the backup
        while not stop.is_set():
            writer_log.log_turn(_turn("live", "q"))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        result = _rsft(config_path, "backup", str(target))
    finally:
        stop.set()
        writer.join()
        writer_log.close()
    assert result.exit_code == 0, result.output
    copied = int(result.stdout.split(": ")[1].split(" turns")[0])
    assert copied >= 30 and ", 30 ratings, 0 rounds" in result.output and not list(target.parent.glob("*.partial"))
    restored_url = postgres_server.create_database("restored")
    subprocess.run([str(pg_binary("pg_restore")), f"--dbname={restored_url}", str(target)], check=True)
    with psycopg.connect(restored_url) as db:
        assert db.execute("SELECT count(*) FROM turns").fetchone()[0] == copied  # the counts are the dump's
    with _open(write_config(tmp_path, log={"url": restored_url})) as restored:
        assert restored.conversation("s0")[0].user_text == "q\x00 with a NUL"
    again = _rsft(config_path, "backup", str(target))
    assert again.exit_code == 1 and "exists" in again.output


@pytest.mark.timeout(600)
def test_a_whole_round_runs_on_postgresql(tmp_path, pretrained, postgres_log_url):
    from rsft_plugin.models.registry import Registry

    from .conftest import feed_traffic, round_config, run_round

    # A small round (the pipeline on PostgreSQL is the point, not the model; tests/test_rounds.py has the full ones).
    config = round_config(tmp_path, log={"url": postgres_log_url}, collect={"min_prompts": 10}, sample={"k": 4},
                          reject={"min_accepted": 5}, finetune={"max_epochs": 1})
    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained).name, "test")
    feed_traffic(config, n=60)  # the real Assistant logs and rates into PostgreSQL
    result = run_round(config, show_bar=False)
    assert result.status == "promoted", result.reason
    with open_log(config) as log:
        assert isinstance(log, PostgresLog)
        examples = log.training_examples(result.round_id)
        assert len(examples) == result.stats["accepted"] > 0
        assert all(log.turn(t) for example in examples[:20] for t in example.turn_ids)
        recorded = log.round(result.round_id)
        assert recorded.status == "promoted" and list(recorded.stage_seconds) == list(result.stage_seconds)
    history = _rsft(config.source, "history")
    assert "promoted" in history.output and "v0002" in history.output


def test_the_console_api_reads_either_backend(config_path, monkeypatch):
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from rsft_plugin.parts import build_parts
    from rsft_plugin.secrets import OPERATOR_TOKEN, get_secret
    from rsft_plugin.webapp import build_app

    monkeypatch.delenv("RSFT_OPERATOR_TOKEN", raising=False)
    config = load_config(config_path)
    with _open(config_path) as log:
        log.rate(log.log_turn(_turn("alice", "where is my parcel?")), "alice", 0)
        log.log_turn(_turn("bob", "can I pay later?"))
    auth = {"Authorization": f"Bearer {get_secret(config.paths.run_dir, OPERATOR_TOKEN)}"}

    async def exercise() -> tuple:
        with build_parts(config) as parts:
            async with TestClient(TestServer(build_app(parts, "http://127.0.0.1:1"))) as client:
                inbox = await (await client.get("/api/conversations?rating=down", headers=auth)).json()
                alice = await (await client.get("/api/conversations/alice", headers=auth)).json()
                export = await (await client.get("/api/export/conversations.csv", headers=auth)).text()
                return inbox, alice, export

    inbox, alice, export = asyncio.run(exercise())
    assert [c["sender_id"] for c in inbox["conversations"]] == ["alice"]
    assert alice["turns"][0]["user_text"] == "where is my parcel?"
    assert len(export.strip().splitlines()) == 3 and "can I pay later?" in export
