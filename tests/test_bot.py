"""The Rasa project itself: `rasa data validate` passes, and every customer question goes to action_answer."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .conftest import REPO

BOT = REPO / "bot"


def test_rasa_data_validate_passes():
    result = subprocess.run([str(REPO / ".venv-rasa" / "bin" / "rasa"), "data", "validate", "--domain", "domain.yml",
                             "--data", "data", "--config", "config.yml", "--fail-on-warnings"], cwd=BOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _rules() -> dict[str, str]:
    """intent -> the action a single-turn rule runs for it (the hand-off form's rules start with a condition)."""
    rules = yaml.safe_load((BOT / "data" / "rules.yml").read_text())["rules"]
    return {r["steps"][0]["intent"]: r["steps"][1]["action"] for r in rules if "intent" in r["steps"][0]}


@pytest.mark.parametrize("intent, action", [("ask_question", "action_answer"), ("nlu_fallback", "action_answer"),
                                            ("rate", "action_rate"), ("choose", "action_choose")])
def test_questions_fallbacks_and_ratings_route_to_the_plugin(intent, action):
    assert _rules()[intent] == action


def test_domain_declares_the_rating_entities_and_no_selective_domain():
    domain = yaml.safe_load((BOT / "domain.yml").read_text())
    assert {"score", "turn_id", "answer_id"} <= set(domain["entities"])
    assert {"action_answer", "action_rate", "action_choose"} <= set(domain["actions"])
    endpoints = (BOT / "endpoints.yml").read_text()
    assert "enable_selective_domain" not in endpoints
