"""`rsft init-rasa` on Rasa's own starter bot (the files `rasa init` copies, taken from the installed Rasa 3.6, no
training), the config that is never silent, and the one action server for the bot's actions and ours."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rsft_plugin.cli import main
from rsft_plugin.config import load_config
from rsft_plugin.rasa.bot_files import InitRasaStopped, init_rasa

from .conftest import REPO

STARTER = REPO / ".venv-rasa" / "lib" / "python3.10" / "site-packages" / "rasa" / "cli" / "initial_project"
pytestmark = pytest.mark.skipif(not STARTER.is_dir(), reason="Rasa 3.6's starter project is not installed")


@pytest.fixture
def moodbot(tmp_path: Path) -> Path:
    bot = tmp_path / "moodbot"
    shutil.copytree(STARTER, bot, ignore=shutil.ignore_patterns("__pycache__"))
    return bot


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_single_domain_file_stops_with_what_to_do_and_changes_nothing(moodbot):
    before = _snapshot(moodbot)
    with pytest.raises(InitRasaStopped, match=r"mkdir domain && mv domain.yml domain/.*--move-domain"):
        init_rasa(moodbot)
    assert _snapshot(moodbot) == before


def test_adds_our_files_beside_the_bots_and_a_second_run_changes_nothing(moodbot):
    before = _snapshot(moodbot)
    result = init_rasa(moodbot, move_domain=True, channel=True)
    after = _snapshot(moodbot)
    # The bot's own files: byte for byte the same (domain.yml only moved into domain/).
    assert after["domain/domain.yml"] == before["domain.yml"]
    for name in ("config.yml", "data/nlu.yml", "data/rules.yml", "data/stories.yml", "actions/actions.py"):
        assert after[name] == before[name]
    assert {"domain/rsft.yml", "data/rsft/nlu.yml", "data/rsft/rules.yml", "rsft.yml"} <= set(after)
    # endpoints.yml and credentials.yml: ours added, theirs kept.
    endpoints = yaml.safe_load(after["endpoints.yml"])
    assert endpoints["action_endpoint"]["url"] == "http://127.0.0.1:5055/webhook"
    assert after["endpoints.yml"].startswith(before["endpoints.yml"])
    credentials = yaml.safe_load(after["credentials.yml"])
    assert "rest" not in credentials and "rsft_plugin.rasa.channels.RestWithFallback" in credentials
    assert credentials["rasa"] == yaml.safe_load(before["credentials.yml"])["rasa"]
    # Every intent of ours has examples, and the rules send questions and fallbacks to action_answer.
    nlu = {block["intent"] for block in yaml.safe_load(after["data/rsft/nlu.yml"])["nlu"]}
    assert {"ask_question", "out_of_scope", "rate", "choose"} == nlu
    rules = {r["steps"][0]["intent"]: r["steps"][1]["action"]
             for r in yaml.safe_load(after["data/rsft/rules.yml"])["rules"]}
    assert rules == {"ask_question": "action_answer", "nlu_fallback": "action_answer", "rate": "action_rate",
                     "choose": "action_choose", "out_of_scope": "utter_out_of_scope"}
    config = load_config(moodbot / "rsft.yml")
    assert config.paths.bot_dir == moodbot.resolve() and config.paths.db.is_relative_to(moodbot.resolve())
    assert result.changed

    again = init_rasa(moodbot, move_domain=True, channel=True)
    assert not again.changed and _snapshot(moodbot) == after


def test_names_the_bot_has_its_own_way_are_left_to_it(moodbot):
    domain = yaml.safe_load((moodbot / "domain.yml").read_text())
    domain["intents"].append("out_of_scope")
    domain["responses"]["utter_default"] = [{"text": "Hmm?"}]
    (moodbot / "domain.yml").write_text(yaml.safe_dump(domain))
    init_rasa(moodbot, move_domain=True)
    ours = yaml.safe_load((moodbot / "domain" / "rsft.yml").read_text())
    assert "out_of_scope" not in ours["intents"] and "utter_default" not in ours["responses"]
    nlu = yaml.safe_load((moodbot / "data" / "rsft" / "nlu.yml").read_text())["nlu"]
    assert all(block["intent"] != "out_of_scope" for block in nlu)


def test_a_clash_with_our_action_names_stops(moodbot):
    domain = yaml.safe_load((moodbot / "domain.yml").read_text())
    domain["actions"] = ["action_answer"]
    (moodbot / "domain.yml").write_text(yaml.safe_dump(domain))
    with pytest.raises(InitRasaStopped, match="action 'action_answer'"):
        init_rasa(moodbot, move_domain=True)
    assert not (moodbot / "domain" / "rsft.yml").exists()


def test_an_existing_action_endpoint_is_kept(moodbot):
    (moodbot / "endpoints.yml").write_text('action_endpoint:\n  url: "http://actions:5055/webhook"\n')
    result = init_rasa(moodbot, move_domain=True)
    assert (moodbot / "endpoints.yml").read_text() == 'action_endpoint:\n  url: "http://actions:5055/webhook"\n'
    assert any("http://actions:5055/webhook" in note for note in result.notes)


def test_cli_init_rasa_then_commands_find_the_config_and_say_which(moodbot, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(moodbot)
    first = runner.invoke(main, ["init-rasa", ".", "--move-domain", "--no-channel"])
    assert first.exit_code == 0, first.output
    assert "wrote" in first.output and "rasa train --domain domain" in first.output
    second = runner.invoke(main, ["init-rasa", ".", "--move-domain", "--no-channel"])
    assert "nothing to do" in second.output
    status = runner.invoke(main, ["status"])
    assert status.exit_code == 0 and f"rsft: config {moodbot / 'rsft.yml'}" in status.stderr


def test_no_config_no_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RSFT_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1 and "rsft init-rasa BOT_DIR" in result.output and "--config" in result.output
    assert list(tmp_path.iterdir()) == []


def test_rsft_config_is_honoured(config, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("RSFT_CONFIG", str(config.source))
    result = CliRunner().invoke(main, ["versions"])
    assert result.exit_code == 0 and f"rsft: config {config.source}" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_doctor_with_nothing_running_fails_each_check_with_its_fix(moodbot, monkeypatch):
    init_rasa(moodbot, move_domain=True, action_url="http://127.0.0.1:9/webhook")
    monkeypatch.chdir(moodbot)
    result = CliRunner().invoke(main, ["doctor", "--rasa-url", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code == 1
    assert "PASS  config:" in result.output and "FAIL  live model" in result.output
    assert "fix: start the action server: `python -m rsft_plugin.rasa`" in result.output
    assert "FAIL  Rasa server" in result.output and "fix: start Rasa" in result.output


def _bot_package(bot: Path, package: str, action_name: str) -> None:
    (bot / package).mkdir(parents=True)
    (bot / package / "__init__.py").write_text("")
    (bot / package / "actions.py").write_text(
        "from rasa_sdk import Action\n\n\n"
        f"class BotAction(Action):\n    def name(self):\n        return {action_name!r}\n\n"
        "    def run(self, dispatcher, tracker, domain):\n        return []\n")


def test_one_executor_serves_the_bots_package_and_ours(config, live_registry, tmp_path):
    from rsft_plugin import runtime
    from rsft_plugin.rasa.server import bot_action_packages, build_executor

    config.paths.bot_dir = tmp_path / "bot"
    _bot_package(config.paths.bot_dir, "botpkg_hello", "action_hello_from_the_bot")
    runtime.boot(config, watch=False)
    try:
        executor = build_executor(config, ["botpkg_hello"])
        assert {"action_answer", "action_rate", "action_hello_from_the_bot"} <= set(executor.actions)
    finally:
        runtime.shutdown()
    assert bot_action_packages(config.paths.bot_dir) == []  # its packages are not called `actions`
    _bot_package(config.paths.bot_dir, "actions", "action_x")
    assert bot_action_packages(config.paths.bot_dir) == ["actions"]


class _DomainServer:
    """A stand-in for Rasa's GET /domain: serves the given action list, so the doctor's reading of it is tested
    without training a bot (test_init_rasa_e2e runs the check against a real Rasa)."""

    def __init__(self, actions: list[str]) -> None:
        import http.server
        import json
        import threading

        body = json.dumps({"actions": actions}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200 if self.path.startswith("/domain?token=") else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("actions", "choices", "ok", "says"), [
    (["action_answer", "action_rate"], 3, False, "lacks action_choose"),
    (["action_answer", "action_rate", "action_choose"], 3, True, "offers 'Was it one of these?'; no 'Talk"),
    (["action_choose", "action_handoff"], 3, True, "'Was it one of these?'; 'Talk to a person'"),
    (["action_answer"], 0, True, "choices are off"),
])
def test_doctor_says_whether_a_thumbs_down_offers_choices(actions, choices, ok, says):
    from rsft_plugin.rasa.doctor import _feedback_buttons

    rasa = _DomainServer(actions)
    try:
        check = _feedback_buttons(rasa.url, "t", choices, timeout=5.0)
    finally:
        rasa.close()
    assert check.ok is ok and says in check.detail, check.line()
    assert ok or "rsft init-rasa" in check.line()
