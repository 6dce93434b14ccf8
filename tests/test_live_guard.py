"""The live guard: a promoted version that customers like less than its parent is rolled back by itself, with the
numbers, shown in `rsft history`, the round report and the console — and the same evidence never brings it back."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rsft_plugin.cli import main
from rsft_plugin.config import load_config
from rsft_plugin.errors import ConfigError, InputError, RegistryError
from rsft_plugin.live_guard import Evidence, check_live_version, guard_rollbacks, prob_worse
from rsft_plugin.log import TurnRecord
from rsft_plugin.model_admin import models_overview, promote_version
from rsft_plugin.parts import build_parts
from rsft_plugin.round_reports import round_detail
from rsft_plugin.round_text import describe_round, history_lines
from rsft_plugin.versions import rollback

from .conftest import relabelled, write_config

GUARD = {"min_ratings": 20, "confidence": 0.95, "margin": 0.05}


def _config_path(tmp_path, **guard):
    return write_config(tmp_path, guard={**GUARD, **guard})


@pytest.fixture
def promoted(tmp_path, pretrained):
    """v0001 (the parent) live with its traffic, then v0002 promoted by round 1: the parts, open."""
    parts = build_parts(load_config(_config_path(tmp_path)))
    registry = parts.registry
    registry.set_live(registry.publish(pretrained, notes="parent").name, "init-model")
    yield parts
    parts.close()


def _promote(parts, pretrained, tag: str = "[v2]") -> str:
    """Publish a child of the live version as round N's result and make it live, as the promote stage does."""
    live = parts.registry.live_name()
    round_id = parts.log.start_round(live, "statistical", {}, 1)
    info = parts.registry.publish(relabelled(pretrained, tag), parent=live, round_id=round_id)
    parts.registry.set_live(info.name, f"round {round_id}")
    parts.log.update_round(round_id, status="promoted", stage="done", new_version=info.name,
                           reason="held-out accuracy 80.0% -> 82.0%", stats={"prompts": 40})
    return info.name


def _feed(parts, version: str, up: int, down: int, prefix: str) -> None:
    """Answered turns by `version`, rated: `up` 👍 and `down` 👎; plus not-understood turns rated 👎 that must not
    count (they are not the same kind of turn)."""
    for i in range(up + down):
        sender = f"{prefix}-{version}-{i}"
        turn_id = parts.log.log_turn(TurnRecord(sender, None, f"question {i}", "track_order", "track_order",
                                                "answer", version, 0.6, 0.4, [], 5.0))
        parts.log.rate(turn_id, sender, int(i < up))
    for i in range(30):
        sender = f"{prefix}-nu-{version}-{i}"
        turn_id = parts.log.log_turn(TurnRecord(sender, None, f"gibberish {i}", None, "not_understood", "sorry",
                                                version, 0.1, 0.1, [], 5.0, reply_key="not_understood"))
        parts.log.rate(turn_id, sender, 0)


def test_a_worse_version_is_rolled_back_with_its_numbers_everywhere(promoted, pretrained):
    parts = promoted
    _feed(parts, "v0001", up=40, down=10, prefix="before")  # parent: 80 % 👍
    new = _promote(parts, pretrained)
    _feed(parts, new, up=10, down=20, prefix="after")  # new: 33 % 👍

    decision = check_live_version(parts)

    assert decision.action == "rolled_back", decision.message
    assert parts.registry.live_name() == "v0001"
    assert (decision.new_up, decision.new_down, decision.parent_up, decision.parent_down) == (10, 20, 40, 10)
    assert decision.p_worse >= 0.95
    assert "v0002 👍 10/30 (33%) vs v0001 👍 40/50 (80%)" in decision.message
    entry = parts.registry.pointer_history()[-1]
    assert (entry["from"], entry["to"]) == ("v0002", "v0001") and "10/30" in entry["reason"]
    assert entry["guard"]["p_worse"] == decision.p_worse
    record = parts.log.round(decision.round_id)
    assert record.status == "promoted" and record.stats["live_guard"]["message"] == decision.message
    assert record.stats["prompts"] == 40, "the round's own stats are kept"
    assert "then: live guard: rolled back v0002 -> v0001" in "\n".join(history_lines(parts.log.rounds()))
    assert "live guard         live guard: rolled back" in describe_round(record, record.id)
    assert "Then live guard: rolled back" in round_detail(parts, record.id)["verdict"]
    overview = models_overview(parts)
    flagged = {v["name"]: v["guard_rollback"] for v in overview["versions"]}
    assert flagged["v0002"] == decision.message and flagged["v0001"] is None
    assert overview["previous"] is None, "the console must not offer the rolled-back version as the rollback target"

    again = check_live_version(parts)  # the same evidence: the parent is live by a rollback, nothing to judge
    assert again.action == "none" and parts.registry.live_name() == "v0001"


def test_the_same_evidence_never_makes_the_rolled_back_version_live_again(promoted, pretrained):
    parts = promoted
    _feed(parts, "v0001", up=40, down=10, prefix="before")
    new = _promote(parts, pretrained)
    _feed(parts, new, up=10, down=20, prefix="after")
    assert check_live_version(parts).action == "rolled_back"

    with pytest.raises(RegistryError, match="live guard rolled v0002 back"):
        rollback(parts.registry)  # "undo" would put v0002 back
    with pytest.raises(InputError, match='"force": true'):
        promote_version(parts, "v0002")
    assert parts.registry.live_name() == "v0001" and set(guard_rollbacks(parts.registry)) == {"v0002"}

    # An operator forces it: the guard judges it again on new evidence only (none yet), not the old ratings.
    rollback(parts.registry, "v0002", force=True)
    assert guard_rollbacks(parts.registry) == {}
    waiting = check_live_version(parts)
    assert waiting.action == "wait" and (waiting.new_up, waiting.new_down) == (0, 0)
    assert parts.registry.live_name() == "v0002"


def _feed_signals(parts, version: str, good: int, bad: int, prefix: str) -> None:
    """Unrated answered turns by `version`: `good` followed by thanks and a pick, `bad` by a re-ask, a request for a
    person or "None of these" (in turn)."""
    for i in range(good + bad):
        sender = f"{prefix}-{version}-{i}"
        turn_id = parts.log.log_turn(TurnRecord(sender, None, f"question {i}", "track_order", "track_order",
                                                "answer", version, 0.6, 0.4, [], 5.0))
        if i < good:
            parts.log.record_signal(turn_id, sender, "thanks", "track_order")
            parts.log.record_signal(turn_id, sender, "choice", "returns")
        else:
            kind = ("reask", "asked_human", "none_of_these")[i % 3]
            parts.log.record_signal(turn_id, sender, kind, None if kind == "none_of_these" else "track_order")


def _judge_signals_only(config_path, pretrained):
    """The parent liked (thanks, picks) and the promoted child disliked (re-asks, asks for a person, "None of
    these"), with no rating at all: the guard's decision."""
    parts = build_parts(load_config(config_path))
    try:
        parts.registry.set_live(parts.registry.publish(pretrained, notes="parent").name, "init-model")
        _feed_signals(parts, "v0001", good=60, bad=6, prefix="before")
        new = _promote(parts, pretrained)
        _feed_signals(parts, new, good=6, bad=60, prefix="after")
        return check_live_version(parts)
    finally:
        parts.close()


@pytest.mark.parametrize("signals", ["implicit", "choices", "choices,implicit"])
def test_choices_and_implicit_signals_alone_can_roll_a_worse_version_back(tmp_path, pretrained, signals):
    decision = _judge_signals_only(_config_path(tmp_path, signals=signals, min_ratings=10), pretrained)
    assert decision.action == "rolled_back", decision.message
    if signals == "implicit":  # thanks 0.3 up; reask / asked_human 0.3 down ("None of these" is a choice)
        assert decision.new_up == pytest.approx(6 * 0.3) and decision.new_down == pytest.approx(40 * 0.3)
    if signals == "choices":  # a pick up, "None of these" down, weight 1
        assert (decision.new_up, decision.new_down) == (6, 20)


def test_the_guard_gives_signals_of_weight_zero_no_say(tmp_path, pretrained):
    path = write_config(tmp_path, guard={**GUARD, "signals": "implicit", "min_ratings": 1},
                        feedback={"thanks_weight": 0.0, "reask_weight": 0.0, "asked_human_weight": 0.0})
    decision = _judge_signals_only(path, pretrained)
    assert decision.action == "wait" and (decision.new_up, decision.new_down) == (0, 0), decision.message


def test_the_guard_waits_while_a_round_runs(promoted, pretrained):
    from rsft_plugin.rounds import round_lock

    parts = promoted
    _feed(parts, "v0001", up=40, down=10, prefix="before")
    new = _promote(parts, pretrained)
    _feed(parts, new, up=0, down=30, prefix="after")
    with round_lock(parts.config.paths.run_dir):
        busy = check_live_version(parts)
    assert busy.action == "none" and "a round is running" in busy.message and parts.registry.live_name() == new
    assert check_live_version(parts).action == "rolled_back"


def test_too_little_evidence_takes_no_action(promoted, pretrained):
    parts = promoted
    _feed(parts, "v0001", up=40, down=10, prefix="before")
    new = _promote(parts, pretrained)
    _feed(parts, new, up=2, down=10, prefix="after")  # clearly bad, but 12 < min_ratings 20

    decision = check_live_version(parts)

    assert decision.action == "wait" and "too little evidence" in decision.message
    assert parts.registry.live_name() == new


def test_a_version_as_good_as_its_parent_stays_live(promoted, pretrained):
    parts = promoted
    _feed(parts, "v0001", up=35, down=15, prefix="before")  # 70 %
    new = _promote(parts, pretrained)
    _feed(parts, new, up=30, down=10, prefix="after")  # 75 %

    decision = check_live_version(parts)

    assert decision.action == "keep" and decision.p_worse < 0.5, decision.message
    assert parts.registry.live_name() == new and guard_rollbacks(parts.registry) == {}


def test_the_guard_is_off_when_disabled_and_the_cli_reports_it(tmp_path, pretrained):
    path = _config_path(tmp_path, enabled=False)
    with build_parts(load_config(path)) as parts:
        parts.registry.set_live(parts.registry.publish(pretrained).name, "init-model")
        _feed(parts, "v0001", up=40, down=10, prefix="before")
        new = _promote(parts, pretrained)
        _feed(parts, new, up=0, down=30, prefix="after")
    off = CliRunner().invoke(main, ["--config", str(path), "guard"], catch_exceptions=False)
    assert off.exit_code == 0 and "guard.enabled: false" in off.output
    on = CliRunner().invoke(main, ["--config", str(path), "--set", "guard.enabled=true", "guard"],
                            catch_exceptions=False)
    assert on.exit_code == 0 and "rolled_back" in on.output and "v0002 👍 0/30 (0%)" in on.output
    refused = CliRunner().invoke(main, ["--config", str(path), "rollback"])
    assert refused.exit_code != 0 and "--force" in refused.output


def test_the_worker_rolls_back_at_its_poll(promoted, pretrained):
    import threading

    from rsft_plugin.worker import run_worker

    parts = promoted
    _feed(parts, "v0001", up=40, down=10, prefix="before")
    new = _promote(parts, pretrained)
    _feed(parts, new, up=5, down=25, prefix="after")
    settings = load_config(parts.config.source, {"worker": {"interval_minutes": 0, "after_new_ratings": 0,
                                                            "poll_seconds": 0.1}})
    lines: list[str] = []
    stop = threading.Event()
    safety = threading.Timer(60, stop.set)  # only so that a broken guard fails the test instead of hanging it
    safety.start()

    def echo(line: str) -> None:
        lines.append(line)
        if "live guard" in line:
            stop.set()

    try:
        started = run_worker(parts.with_config(settings), echo=echo, stop=stop)
    finally:
        safety.cancel()
    assert started == 0 and parts.registry.live_name() == "v0001"
    assert any("worker: live guard: rolled back v0002 -> v0001" in line for line in lines), lines


@pytest.mark.parametrize(("new", "parent", "margin", "expected"), [
    (Evidence(50, 50, 100), Evidence(50, 50, 100), 0.0, 0.5),  # equal evidence: even odds
    (Evidence(10, 90, 100), Evidence(90, 10, 100), 0.05, 1.0),  # far worse
    (Evidence(90, 10, 100), Evidence(10, 90, 100), 0.0, 0.0),  # far better
])
def test_prob_worse_matches_the_posteriors(new, parent, margin, expected):
    assert prob_worse(new, parent, margin) == pytest.approx(expected, abs=1e-3)


def test_prob_worse_agrees_with_sampling():
    import numpy as np

    rng = np.random.default_rng(0)
    new, parent, margin = Evidence(20, 12, 32), Evidence(30, 10, 40), 0.05
    draws = rng.beta(1 + parent.up, 1 + parent.down, 200_000) - rng.beta(1 + new.up, 1 + new.down, 200_000)
    assert prob_worse(new, parent, margin) == pytest.approx(float(np.mean(draws > margin)), abs=0.005)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("confidence", 1.0, "guard.confidence"), ("confidence", 0.3, "guard.confidence"),
    ("margin", -0.1, "guard.margin"), ("min_ratings", 0, "guard.min_ratings"),
    ("parent_window", 5, "guard.parent_window"), ("signals", "ratings, telepathy", "guard.signals"),
    ("signals", " , ", "guard.signals"), ("enabled", "yes", "guard.enabled"), ("speed", 1, "unknown key"),
])
def test_bad_guard_settings_are_refused(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, guard={key: value}))
