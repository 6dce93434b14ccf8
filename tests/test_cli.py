"""The rsft CLI: every command documents itself with an example, and the issue-2 commands work on real files."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rsft_plugin.cli import main
from rsft_plugin.log import TurnRecord, open_sqlite


def _commands() -> list[str]:
    return sorted(main.commands)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert main.commands[command].help and "Example:" in result.output


def _run(config_path, *args):
    return CliRunner().invoke(main, ["--config", str(config_path), *args], catch_exceptions=False)


def test_init_model_eval_versions_and_log(config):
    path = config.source
    first = _run(path, "init-model")
    assert first.exit_code == 0 and "created v0001" in first.output
    again = _run(path, "init-model")
    assert "nothing to do" in again.output and "v0001" in again.output

    evaluation = _run(path, "eval", "--split", "heldout")
    assert evaluation.exit_code == 0
    assert "model v0001" in evaluation.output and evaluation.output.strip().splitlines()[-1].startswith("ALL")

    versions = _run(path, "versions")
    assert "*  v0001" in versions.output

    store = open_sqlite(config.paths.db)
    store.rate(store.log_turn(TurnRecord("cli-sender", None, "where is my order", "track_order", "track_order",
                                         "text", "v0001", 0.5, 0.3, [], 10.0)), "cli-sender", 0)
    store.close()
    log = _run(path, "log", "--limit", "5")
    assert "where is my order" in log.output and "👎" in log.output


def test_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "rsft.yml"
    bad.write_text("model:\n  temprature: 1\n")
    result = CliRunner().invoke(main, ["--config", str(bad), "versions"])
    assert result.exit_code != 0
    assert "unknown key(s) ['temprature']" in result.output and "Traceback" not in result.output


def test_eval_of_an_unknown_version_is_a_clear_error(config):
    _run(config.source, "init-model")
    result = CliRunner().invoke(main, ["--config", str(config.source), "eval", "--version", "v0042"])
    assert result.exit_code == 1 and "v0042" in result.output


def test_set_overrides_any_setting_for_a_command_and_refuses_bad_values(config):
    shown = _run(config.source, "--set", "reject.beta=0.5", "--set", "sample.k=3", "config")
    assert shown.exit_code == 0
    assert "beta: 0.5" in shown.output and "k: 3" in shown.output and str(config.source) in shown.output
    bad = CliRunner().invoke(main, ["--config", str(config.source), "--set", "reject.rule=nonsense", "status"])
    assert bad.exit_code != 0 and "valid rules are" in bad.output
    malformed = CliRunner().invoke(main, ["--config", str(config.source), "--set", "beta=0.5", "status"])
    assert malformed.exit_code != 0 and "SECTION.KEY=VALUE" in malformed.output


def test_history_says_why_each_round_ended_and_log_shows_whole_sender_ids(config):
    sender = "3f2a9c61-0b7e-4c55-9d1a-8e2f6a7b9c0d-a-long-sender-id"
    with open_sqlite(config.paths.db) as store:
        store.log_turn(TurnRecord(sender, None, "where is my order", "track_order", "track_order", "text", "v0001",
                                  0.5, 0.3, [], 10.0))
        kept = store.start_round("v0001", "statistical", {}, 1)
        store.update_round(kept, status="kept", stage="done", reason="held-out accuracy 80.0% -> 79.0% is below")
        stopped = store.start_round("v0001", "statistical", {}, 1)
        store.update_round(stopped, status="stopped", stage="collect", reason="only 3 prompts; need 20")
    history = _run(config.source, "history")
    assert "why: held-out accuracy 80.0% -> 79.0% is below" in history.output
    assert "why: only 3 prompts; need 20" in history.output
    log = _run(config.source, "log")
    assert sender in log.output.split()  # whole, so it can be copied into `rsft forget`
    forget = _run(config.source, "forget", log.stdout.splitlines()[1].split()[-1], "--yes")
    assert "deleted 1 turns" in forget.output


def test_versions_show_hand_offs_per_100_answered_turns(config, live_registry):
    """Issue 14, finding 4: hand-offs per model version are a live signal beside the held-out accuracy."""
    with open_sqlite(config.paths.db) as store:
        for n in range(4):
            store.log_turn(TurnRecord("s", None, f"q{n}", "track_order", "track_order", "text", "v0001", 0.5, 0.3,
                                      [], 10.0))
        store.open_handoff("s", "asked", "v0001")
    versions = _run(config.source, "versions")
    header = next(line for line in versions.stdout.splitlines() if "version" in line)
    row = next(line for line in versions.stdout.splitlines() if line.startswith("*"))
    assert "hand-offs/100" in header and "25.0 (1/4)" in row
