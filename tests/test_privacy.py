"""Personal data, rating abuse and backups: redaction before training/reports, retention, forget, caps, backup."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from click.testing import CliRunner

from rsft_plugin.assistant import Assistant
from rsft_plugin.cli import main
from rsft_plugin.errors import RatingRefused
from rsft_plugin.log import TurnRecord, open_sqlite
from rsft_plugin.models.live import LiveModel
from rsft_plugin.pii import redact
from rsft_plugin.stages.score import capped_votes, smoothed_rating

from .conftest import feed_traffic, round_config, run_round


@pytest.mark.parametrize("text, expected", [
    ("write to ann.smith+shop@example.co.uk", "write to [EMAIL]"),
    ("card 4111 1111 1111 1111 was charged twice", "card [CARD] was charged twice"),
    ("card 4111-1111-1111-1112 is a typo", "card 4111-1111-1111-1112 is a typo"),  # fails Luhn: not a card
    ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [IBAN] please"),
    ("iban DE89370400440532013000", "iban [IBAN]"),
    ("call me on +44 20 7946 0958", "call me on [PHONE]"),
    ("or (555) 123-4567 after six", "or [PHONE] after six"),
    ("deliver to SW1A 1AA", "deliver to [POSTCODE]"),
    ("zip code 10001", "zip code [POSTCODE]"),
    ("Springfield, IL 62704", "Springfield, [POSTCODE]"),
    ("ZIP+4 90210-1234", "ZIP+4 [POSTCODE]"),
    ("order #48213 is late", "order #48213 is late"),
    ("order 123456789 never came", "order 123456789 never came"),
    ("I paid 25.90 EUR", "I paid 25.90 EUR"),
])
def test_redaction(text, expected):
    assert redact(text) == expected


def test_personal_data_never_reaches_training_examples_or_reports(tmp_path, pretrained):
    config = round_config(tmp_path)
    from rsft_plugin.models.registry import Registry

    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained).name, "test")
    feed_traffic(config, n=120)
    store = open_sqlite(config.paths.db)
    secret_mail, secret_card = "jane.doe@example.org", "4111 1111 1111 1111"
    for n in range(30):
        text = f"my card {secret_card} was charged twice, mail jane.doe@example.org #{n}"
        turn_id = store.log_turn(TurnRecord(f"pii-{n}", None, text, "double_charge", "double_charge", "...",
                                            "v0001", 0.6, 0.5, [], 5.0))
        store.rate(turn_id, f"pii-{n}", 1)
    store.close()
    result = run_round(config, show_bar=False)
    assert result.status == "promoted", result.reason
    store = open_sqlite(config.paths.db)
    try:
        prompts = [row[0] for row in store.db.execute("SELECT text FROM round_prompts")]
        assert any("[CARD]" in p and "[EMAIL]" in p for p in prompts)
        dumped = json.dumps(prompts) + json.dumps([e.to_dict() for e in store.training_examples()])
        assert secret_mail not in dumped and secret_card not in dumped
        assert store.db.execute("SELECT count(*) FROM turns WHERE user_text LIKE '%jane.doe%'").fetchone()[0] == 30
    finally:
        store.close()
    report = (result.report_dir / "report.json").read_text()
    assert secret_mail not in report and secret_card not in report


def test_retention_redacts_old_raw_text_only(tmp_path):
    store = open_sqlite(tmp_path / "rsft.db")
    old = store.log_turn(TurnRecord("s", None, "mail me: a@b.example", "x", "x", "sent to a@b.example", "v1", 0.5,
                                    0.5, [], 1.0))
    store.db.execute("UPDATE turns SET created_at = '2000-01-01T00:00:00.000+00:00' WHERE id = ?", [old])
    new = store.log_turn(TurnRecord("s", None, "mail me: c@d.example", "x", "x", "...", "v1", 0.5, 0.5, [], 1.0))
    store.close()
    config_path = tmp_path / "rsft.yml"
    config_path.write_text(f"paths:\n  db: {tmp_path / 'rsft.db'}\nprivacy:\n  retention_days: 30\n")
    result = CliRunner().invoke(main, ["--config", str(config_path), "retention"])
    assert result.exit_code == 0 and "redacted 1 turns" in result.output
    store = open_sqlite(tmp_path / "rsft.db")
    try:
        assert store.turn(old)["user_text"] == "mail me: [EMAIL]"
        assert store.turn(old)["answer_text"] == "sent to [EMAIL]"
        assert store.turn(new)["user_text"] == "mail me: c@d.example"
    finally:
        store.close()


def test_forget_deletes_a_customer_everywhere(tmp_path, pretrained):
    config = round_config(tmp_path)
    from rsft_plugin.models.registry import Registry

    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained).name, "test")
    feed_traffic(config, n=120)
    run_round(config, show_bar=False)
    store = open_sqlite(config.paths.db)
    sender = store.db.execute("SELECT sender_id FROM turns LIMIT 1").fetchone()[0]
    their_turns = {r[0] for r in store.db.execute("SELECT id FROM turns WHERE sender_id = ?", [sender])}
    store.close()
    result = CliRunner().invoke(main, ["--config", str(config.source), "forget", sender, "--yes"])
    assert result.exit_code == 0 and "deleted 1 turns, 1 ratings, 0 signals and 0 hand-offs" in result.output
    with sqlite3.connect(config.paths.db) as db:
        assert db.execute("SELECT count(*) FROM turns WHERE sender_id = ?", [sender]).fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM ratings WHERE sender_id = ?", [sender]).fetchone()[0] == 0
        for (turn_ids,) in db.execute("SELECT turn_ids FROM round_prompts"):
            assert not their_turns & set(json.loads(turn_ids))
    next_round = run_round(config, show_bar=False)
    store = open_sqlite(config.paths.db)
    try:
        for example in store.training_examples(next_round.round_id):
            assert not their_turns & set(example["turn_ids"])
    finally:
        store.close()


def test_ratings_are_rate_limited_per_sender(config, live_registry):
    store = open_sqlite(config.paths.db)
    assistant = Assistant(store, LiveModel(live_registry, config.model), max_ratings_per_minute=3)
    try:
        turns = [assistant.answer("eager", None, f"where is my order {n}").turn_id for n in range(5)]
        for turn_id in turns[:3]:
            assistant.rate("eager", turn_id, 1)
        with pytest.raises(RatingRefused, match="a lot of ratings"):
            assistant.rate("eager", turns[3], 1)
        assert store.count("ratings") == 3
        other = assistant.answer("calm", None, "where is my order").turn_id
        assistant.rate("calm", other, 0)  # the limit is per sender
    finally:
        store.close()


def test_one_sender_cannot_teach_the_bot_a_wrong_answer():
    one_troll = [("troll", 1)] * 50  # fifty 👍 from one sender on a wrong answer
    honest = [("ann", 0), ("bob", 0)]
    up, down = capped_votes(one_troll + honest, max_weight_per_sender=1.0)
    assert (up, down) == (1.0, 2.0)
    assert smoothed_rating(up, down) < 0.5


def test_backup_while_the_bot_writes(tmp_path):
    store = open_sqlite(tmp_path / "rsft.db")
    for n in range(200):
        store.log_turn(TurnRecord(f"s{n}", None, "q", "x", "x", "a", "v1", 0.5, 0.5, [], 1.0))
    writer_store = open_sqlite(tmp_path / "rsft.db")
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            writer_store.log_turn(TurnRecord("live", None, "q", "x", "x", "a", "v1", 0.5, 0.5, [], 1.0))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        config_path = tmp_path / "rsft.yml"
        config_path.write_text(f"paths:\n  db: {tmp_path / 'rsft.db'}\n")
        result = CliRunner().invoke(main, ["--config", str(config_path), "backup", str(tmp_path / "copy.db")])
    finally:
        stop.set()
        writer.join()
        writer_store.close()
        store.close()
    assert result.exit_code == 0, result.output
    copied = int(result.stdout.split(": ")[1].split(" turns")[0])  # stderr has the config line
    with sqlite3.connect(tmp_path / "copy.db") as restored:
        assert restored.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert restored.execute("SELECT count(*) FROM turns").fetchone()[0] == copied >= 200
    again = CliRunner().invoke(main, ["--config", str(config_path), "backup", str(tmp_path / "copy.db")])
    assert again.exit_code == 1 and "exists" in again.output
