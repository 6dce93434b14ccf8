"""End to end (issue 15): Rasa's own starter bot — the files `rasa init` writes, from Rasa's own scaffolding function —
then the three commands of the README — `rsft init-rasa`, `rasa train`, and start (one action server for the bot's
actions and ours, Rasa) — and the bot keeps its flows, answers store questions with rating buttons, refuses
off-topic lines, falls back when the action server is down, and `rsft doctor` passes. Rasa trains once: `rasa init
--no-prompt` would also train the starter bot, a model nobody here uses (3-7 minutes of CI on 2 cores).

Run with -s to see the wall time of each command.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from rsft_plugin.ports import free_port
from rsft_plugin.rasa import rasa_pythonpath

from .conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
RASA = REPO / ".venv-rasa" / "bin" / "rasa"
RASA_PYTHON = REPO / ".venv-rasa" / "bin" / "python"
QUIET = {"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
BOT_ACTION = '''from rasa_sdk import Action


class ActionHelloWorld(Action):
    def name(self):
        return "action_hello_world"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Hello World!")
        return []
'''


def _shorten_training(config_yml: Path) -> None:
    """Spell out Rasa's default pipeline and policies (what the starter's commented-out config gets) with 20 epochs
    per network instead of 100: the starter's flows are memorised by its rules and stories, and ours by DIET from
    init-rasa's examples, so only `rasa train` gets shorter (163 s -> 85 s on 2 cores)."""
    [default_yml] = (REPO / ".venv-rasa" / "lib").glob(
        "python3*/site-packages/rasa/engine/recipes/config_files/default_config.yml")
    default = yaml.safe_load(default_yml.read_text())
    config = yaml.safe_load(config_yml.read_text()) or {}
    for part in ("pipeline", "policies"):
        assert not config.get(part), f"the starter now sets {part}: train it as it is"
        config[part] = [{**component, "epochs": 20} if "epochs" in component else component
                        for component in default[part]]
    config_yml.write_text(yaml.safe_dump(config, sort_keys=False))


def _rasa_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **QUIET, **extra}


def _timed(label: str, timings: dict[str, float], command: list[str], **kwargs) -> subprocess.CompletedProcess:
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, **kwargs)
    timings[label] = time.monotonic() - began
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}: {log.read_text()[-3000:]}"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} not up after {seconds} s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    """The moodbot after the three commands, with its servers running: (bot, urls, tokens, timings, processes)."""
    root = tmp_path_factory.mktemp("starter")
    bot = root / "moodbot"
    bot.mkdir()
    timings: dict[str, float] = {}
    _timed("rasa init's scaffolding (the moodbot's files)", timings,
           [str(RASA_PYTHON), "-c", "import sys; from rasa.cli.scaffold import create_initial_project; "
            "create_initial_project(sys.argv[1])", str(bot)], cwd=root, env=_rasa_env())
    assert not (bot / "models").exists() or not any((bot / "models").iterdir())  # nothing trained before ours
    (bot / "actions" / "actions.py").write_text(BOT_ACTION)  # the bot's own action package has one action
    _shorten_training(bot / "config.yml")
    rasa_port, action_port = free_port(), free_port()
    tokens = {"RSFT_RASA_TOKEN": "e2e-rasa-token-" + os.urandom(8).hex(),
              "RSFT_ACTION_TOKEN": "e2e-action-token-" + os.urandom(8).hex()}
    ours = {**os.environ, "PYTHONPATH": str(REPO), **tokens}
    ours.pop("RSFT_CONFIG", None)

    _timed("rsft init-rasa", timings, [sys.executable, "-m", "rsft_plugin.cli", "init-rasa", ".", "--move-domain",
                                      "--channel", "--action-url", f"http://127.0.0.1:{action_port}/webhook"],
           cwd=bot, env=ours)
    _timed("rasa train --domain domain", timings, [str(RASA), "train", "--domain", "domain",
                                                   "--fixed-model-name", "with-rsft"], cwd=bot, env=_rasa_env())

    processes: dict[str, subprocess.Popen] = {}
    logs = {name: root / f"{name}.log" for name in ("actions", "rasa")}
    began = time.monotonic()
    with logs["actions"].open("w") as log:
        processes["actions"] = subprocess.Popen(
            [sys.executable, "-m", "rsft_plugin.rasa", "--port", str(action_port)], cwd=bot, env=ours,
            stdout=log, stderr=subprocess.STDOUT)
    with logs["rasa"].open("w") as log:
        processes["rasa"] = subprocess.Popen(
            [str(RASA), "run", "--enable-api", "--auth-token", tokens["RSFT_RASA_TOKEN"], "--interface", "127.0.0.1",
             "--port", str(rasa_port), "--model", "models/with-rsft.tar.gz"], cwd=bot,
            env=_rasa_env(PYTHONPATH=rasa_pythonpath(), **tokens), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"http://127.0.0.1:{action_port}/health", processes["actions"], logs["actions"])
        _wait_for(f"http://127.0.0.1:{rasa_port}/webhooks/rest/", processes["rasa"], logs["rasa"])
        timings["start (action server + Rasa, first start makes the pretrained version)"] = time.monotonic() - began
        print("\nwall time on a fresh starter bot:\n" + "\n".join(f"  {s:7.1f} s  {label}"
                                                                  for label, s in timings.items()))
        yield {"bot": bot, "rasa": f"http://127.0.0.1:{rasa_port}", "actions": f"http://127.0.0.1:{action_port}",
               "env": ours, "tokens": tokens, "processes": processes}
    finally:
        for process in processes.values():
            _stop(process)


def _say(starter, sender: str, text: str) -> list[dict]:
    reply = requests.post(f"{starter['rasa']}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                          timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _is_store_answer(messages: list[dict]) -> bool:
    return any(b.get("payload", "").startswith("/rate{") for m in messages for b in m.get("buttons") or [])


def test_one_action_server_serves_the_bots_actions_and_ours(starter):
    served = {item["name"] for item in requests.get(f"{starter['actions']}/actions", timeout=10).json()}
    assert {"action_hello_world", "action_answer", "action_rate"} <= served


def test_the_moodbots_flows_are_unchanged(starter):
    assert [m.get("text") for m in _say(starter, "mood", "hello")] == ["Hey! How are you?"]
    sad = _say(starter, "mood", "I am sad")
    assert sad[0]["text"] == "Here is something to cheer you up:" and any(m.get("image") for m in sad)
    assert sad[-1]["text"] == "Did that help you?" and not _is_store_answer(sad)


@pytest.mark.parametrize("question", ["where is my order 12345?", "how do I return an item?",
                                      "I need an invoice for my last order"])
def test_customer_questions_get_our_answer_with_rating_buttons(starter, question):
    messages = _say(starter, f"customer-{abs(hash(question))}", question)
    assert _is_store_answer(messages), messages


def test_a_rating_lands_on_its_turn(starter):
    answer = next(m for m in _say(starter, "rater", "when will my refund arrive?") if m.get("buttons"))
    thumbs_up = next(b for b in answer["buttons"] if b["title"] == "👍")
    turn_id = json.loads(thumbs_up["payload"][len("/rate"):])["turn_id"]
    assert any("Thanks" in m.get("text", "") for m in _say(starter, "rater", thumbs_up["payload"]))
    db = yaml.safe_load((starter["bot"] / "rsft.yml").read_text())["paths"]["db"]
    with sqlite3.connect(starter["bot"] / db) as connection:
        rows = connection.execute("SELECT sender_id, score FROM ratings WHERE turn_id = ?", (turn_id,)).fetchall()
    assert rows == [("rater", 1)]


@pytest.mark.parametrize("line", ["what's the weather like in paris?", "tell me a joke", "who won the game?"])
def test_off_topic_lines_get_no_store_answer(starter, line):
    messages = _say(starter, f"offtopic-{abs(hash(line))}", line)
    assert messages and not _is_store_answer(messages), messages


def test_rsft_doctor_passes(starter):
    done = subprocess.run([sys.executable, "-m", "rsft_plugin.cli", "doctor", "--rasa-url", starter["rasa"],
                           "--token", starter["tokens"]["RSFT_RASA_TOKEN"]], cwd=starter["bot"], env=starter["env"],
                          capture_output=True, text=True, timeout=300)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout and f"rsft: config {starter['bot'] / 'rsft.yml'}" in done.stderr
    assert "PASS  feedback buttons: after a 👎 the bot offers 'Was it one of these?'" in done.stdout


def test_zz_action_server_down_gives_the_fallback_line(starter):  # last: it stops the action server
    _stop(starter["processes"]["actions"])
    fallback = yaml.safe_load((starter["bot"] / "domain" / "rsft.yml").read_text())["responses"]["utter_default"]
    messages = _say(starter, "while-down", "where is my parcel?")
    assert [m.get("text") for m in messages] == [fallback[0]["text"].strip()]
