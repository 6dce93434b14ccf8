"""The hand-off service (rsft_plugin/handoff.py) on a real SQLite log: reasons, the contact check, honest
confirmations, the operators' moves, and the contact as personal data (exports, retention, forget)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from rsft_plugin import handoff
from rsft_plugin.cli import main
from rsft_plugin.config import ConfigError, HandoffConfig, load_config
from rsft_plugin.errors import Conflict, InputError, NotFound
from rsft_plugin.exports import export_lines
from rsft_plugin.log import TurnRecord, open_sqlite
from rsft_plugin.maintenance import apply_retention
from rsft_plugin.parts import build_parts

from .conftest import write_config


@pytest.fixture
def log(tmp_path):
    opened = open_sqlite(tmp_path / "rsft.db")
    yield opened
    opened.close()


@pytest.fixture
def desk(log):
    return handoff.HandoffDesk(log, lambda: "v0007", HandoffConfig(support_email="help@shop.example"))


@pytest.mark.parametrize("text, expected", [
    ("bob@example.com", "bob@example.com"),
    ("  Bob.Smith+orders@Mail.Example.CO.UK ", "Bob.Smith+orders@mail.example.co.uk"),  # the domain is lower-cased
    ("sure, it's anna_k@shop-mail.example.", "anna_k@shop-mail.example"),  # in a sentence, a full stop after it
    ("<eve@example.org>", "eve@example.org"),
])
def test_an_email_is_found_alone_or_in_a_sentence(text, expected):
    assert handoff.read_contact(text) == handoff.ContactAnswer("email", expected)


@pytest.mark.parametrize("text", [
    "", "   ", "bob", "bob@", "@example.com", "bob@example", "bob@@example.com", "bob@example.c",
    "bob at example dot com", "bob@exa mple.com", "a@b.com and c@d.com", "x" * 65 + "@example.com",
    "bob..smith@example.com", ".bob@example.com", "bob@example.com@evil.example", "bob@-example.com",
    "where is my order?", '/rate{"turn_id":"abc","score":1}', None, 42,
])
def test_anything_else_is_invalid_and_asked_again(text):
    assert handoff.read_contact(text).kind == "invalid"


@pytest.mark.parametrize("text", ["no", "No.", "nope", "no thanks", "No, thank you!", "cancel", "Cancel please",
                                  "skip", "I'd rather not", "never mind", "no email please", "don't want to",
                                  "Nope, not giving that", "I’d rather not say"])
def test_the_customer_can_decline(text):
    assert handoff.read_contact(text) == handoff.ContactAnswer("declined")


def test_the_reason_comes_from_the_button_and_anything_else_is_asking():
    assert handoff.reason_from("low_score") == "low_score"
    assert handoff.reason_from("repeated_thumbs_down") == "repeated_thumbs_down"
    for other in (None, "", "asked", "urgent", 5, {"a": 1}):
        assert handoff.reason_from(other) == "asked"
    assert handoff.person_button("low_score") == {"title": "Talk to a person",
                                                  "payload": '/human_handoff{"reason":"low_score"}'}


def test_a_request_is_recorded_with_the_live_version_then_its_contact(desk, log):
    recorded = desk.request("alice", "low_score")
    assert (recorded.sender_id, recorded.reason, recorded.model_version, recorded.status,
            recorded.contact_state) == ("alice", "low_score", "v0007", "open", "pending")
    said = desk.record_contact("alice", recorded.id, "alice@example.com")
    assert said == handoff.confirmation("alice@example.com", "help@shop.example")
    assert "reply to alice@example.com within one business day" in said
    assert log.handoff(recorded.id).contact == "alice@example.com"


def test_declining_keeps_the_hand_off_and_says_where_to_write_instead(desk, log):
    recorded = desk.request("bob", None)
    said = desk.record_contact("bob", recorded.id, None)
    assert "help@shop.example" in said and "will reply to" not in said  # no promise nobody can keep
    kept = log.handoff(recorded.id)
    assert (kept.status, kept.contact, kept.contact_state, kept.reason) == ("open", None, "declined", "asked")


def test_a_contact_never_lands_on_another_conversations_hand_off(desk, log):
    alices = desk.request("alice", None)
    desk.record_contact("mallory", alices.id, "mallory@example.com")
    assert log.handoff(alices.id).contact is None
    assert [h.contact for h in log.handoffs(sender_id="mallory")] == ["mallory@example.com"]  # recorded anew
    desk.record_contact("carol", None, "carol@example.com")  # no id at all: still recorded
    assert [h.contact for h in log.handoffs(sender_id="carol")] == ["carol@example.com"]


def test_operators_take_and_close_with_clear_errors(log):
    first = log.open_handoff("alice", "asked", "v1")
    assert handoff.take(log, str(first.id)).status == "taken" and log.handoff(first.id).taken_by == "operator"
    with pytest.raises(Conflict):
        handoff.take(log, first.id)
    assert handoff.close(log, first.id).status == "closed"
    for unknown in ("999", "abc", "-1", "1e3", None, True):
        with pytest.raises(NotFound):
            handoff.take(log, unknown)
    listed = handoff.queue(log, "closed")
    assert [h["id"] for h in listed["handoffs"]] == [first.id] and listed["counts"]["closed"] == 1
    assert handoff.open_count(log) == 0
    with pytest.raises(InputError):
        handoff.queue(log, "lost")


def test_hand_offs_per_100_answered_turns_of_each_version(log):
    for n in range(8):
        log.log_turn(TurnRecord("s", None, f"q{n}", "a", "a", "text", "v1", 0.5, 0.5, [], 1.0))
    log.log_turn(TurnRecord("s", None, "zzz", None, "not_understood", "?", "v1", 0.1, 0.1, [], 1.0,
                            reply_key="not_understood"))
    log.open_handoff("s", "asked", "v1")
    log.open_handoff("t", "low_score", "v1")
    signal = handoff.per_version(log)["v1"]
    assert (signal.handoffs, signal.answered_turns, signal.per_100_answers) == (2, 8, 25.0)


@pytest.mark.parametrize("settings, thumbs_down, offered", [
    ({}, 1, False), ({}, 2, True), ({}, 5, True), ({"offer_after_thumbs_down": 3}, 2, False),
    ({"offer_after_thumbs_down": 0}, 10, False),
])
def test_the_person_is_offered_from_the_configured_number_of_thumbs_down(settings, thumbs_down, offered):
    assert handoff.offers_person(thumbs_down, HandoffConfig(**settings)) is offered


@pytest.mark.parametrize("section, message", [
    ({"offer_after_thumbs_down": -1}, "offer_after_thumbs_down"), ({"support_email": "nobody"}, "support_email"),
])
def test_bad_hand_off_settings_are_refused(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, handoff=section))


# ---- the contact is personal data ------------------------------------------------------------------------------


def test_exports_redact_the_contact(tmp_path):
    config = load_config(write_config(tmp_path))
    with build_parts(config) as parts:
        recorded = parts.log.open_handoff("alice", "asked", "v1")
        parts.log.set_handoff_contact(recorded.id, "alice.private@example.com")
        for fmt in ("jsonl", "csv"):
            text = "".join(export_lines(parts.log, "handoffs", fmt))
            assert "alice.private" not in text and "[EMAIL]" in text and "alice" in text  # the sender id stays
        row = json.loads("".join(export_lines(parts.log, "handoffs", "jsonl")))
        assert (row["reason"], row["contact"], row["contact_state"]) == ("asked", "[EMAIL]", "given")


def test_retention_redacts_old_contacts_only(tmp_path):
    config = load_config(write_config(tmp_path, privacy={"retention_days": 30}))
    with build_parts(config) as parts:
        old, new = (parts.log.open_handoff(sender, "asked", "v1") for sender in ("alice", "bob"))
        parts.log.set_handoff_contact(old.id, "old@example.com")
        parts.log.set_handoff_contact(new.id, "new@example.com")
        stamp = (datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="milliseconds")
        parts.log.db.execute("UPDATE handoffs SET created_at = ? WHERE id = ?", [stamp, old.id])
        apply_retention(parts)
        assert parts.log.handoff(old.id).contact == "[EMAIL]"
        assert parts.log.handoff(new.id).contact == "new@example.com"


def test_rsft_forget_deletes_the_hand_off_and_its_contact(tmp_path):
    config = load_config(write_config(tmp_path))
    with build_parts(config) as parts:
        parts.log.set_handoff_contact(parts.log.open_handoff("alice", "asked", "v1").id, "alice@example.com")
        parts.log.open_handoff("bob", "asked", "v1")
    result = CliRunner().invoke(main, ["--config", str(config.source), "forget", "alice", "--yes"])
    assert result.exit_code == 0 and "1 hand-offs" in result.output, result.output
    with build_parts(config) as parts:
        assert [h.sender_id for h in parts.log.handoffs()] == ["bob"]
        assert parts.log.db.execute("SELECT count(*) FROM handoffs WHERE contact IS NOT NULL").fetchone()[0] == 0
