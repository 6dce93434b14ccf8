"""`rsft doctor`: is a bot wired to rsft, and where do customers' lines go? Each check passes or fails with its fix.

It asks the running servers, never guesses from files alone: the action server's /actions (are the bot's and rsft's
actions served there, does the endpoint's token get in), Rasa's HTTP API /status (is a model loaded, does the API
take our token and refuse strangers), and /model/parse for sample customer questions and off-topic lines (does the
bot's trained model send each to rsft's answer action or to the bot's own flows).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..choices import CHOOSE_ACTION
from ..handoff import HANDOFF_ACTION
from ..parts import Parts
from . import ANSWER_ACTION, RATE_ACTION, TOKEN_HEADER

# Questions a store's customers ask, in words that are not in rsft's training examples.
SAMPLE_QUESTIONS = ("my parcel still hasn't shown up, where is it?", "how can I send back a jacket that doesn't fit?",
                    "I was billed two times for one order", "could you email me a receipt for my purchase?")
# Lines that are neither the store's business; they must not get a store answer.
SAMPLE_OFF_TOPIC = ("tell me a joke about cats", "what will the weather be in berlin tomorrow?",
                    "who won the football match yesterday?")
ANSWER_INTENTS = ("ask_question", "nlu_fallback")  # the intents rsft's rules send to action_answer
_ENV_VAR = re.compile(r"\$\{([^}]+)\}")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text}\n      fix: {self.fix}"


def run_checks(parts: Parts, rasa_url: str, token: str | None, questions: Iterable[str] = SAMPLE_QUESTIONS,
               off_topic: Iterable[str] = SAMPLE_OFF_TOPIC, timeout: float = 10.0) -> list[Check]:
    """Every check, in the order a person would fix them."""
    config = parts.config
    bot = config.paths.bot_dir
    checks = [_live_model(parts)]
    checks += _action_endpoint(bot, timeout)
    status = _rasa_status(rasa_url, token, timeout)
    checks += status
    if all(check.ok for check in status):
        checks.append(_feedback_buttons(rasa_url, token, config.feedback.choices, timeout))
        checks += [_route(rasa_url, token, line, True, bot, timeout) for line in questions]
        checks += [_route(rasa_url, token, line, False, bot, timeout) for line in off_topic]
    return checks


def _live_model(parts: Parts) -> Check:
    config = parts.config
    live = parts.registry.live_name()
    if live:
        return Check("live model", True, f"{live} in {config.paths.models_dir}")
    return Check("live model", False, f"no live version in {config.paths.models_dir}",
                 "run `rsft init-model` (the action server also makes one on its first start)")


def _action_endpoint(bot: Path, timeout: float) -> list[Check]:
    path = bot / "endpoints.yml"
    try:
        endpoint = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("action_endpoint") or {}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        return [Check("action endpoint", False, f"cannot read {path}: {exc}", "run `rsft init-rasa` on the bot")]
    url = _expand(str(endpoint.get("url") or "")) if isinstance(endpoint, dict) else ""
    if not url:
        return [Check("action endpoint", False, f"{path} names no action_endpoint url",
                      "run `rsft init-rasa` on the bot (it adds one)")]
    base = url.rsplit("/webhook", 1)[0]
    start = f"start the action server: `python -m rsft_plugin.rasa` in {bot}"
    try:
        served = {item["name"] for item in _get_json(f"{base}/actions", timeout)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Check("action endpoint", False, f"{base}/actions does not answer ({_reason(exc)})", start)]
    wanted = {ANSWER_ACTION, RATE_ACTION} | _bot_actions(bot)
    missing = sorted(wanted - served)
    checks = [Check("action endpoint", not missing,
                    f"{url} serves {', '.join(sorted(served))}" if not missing else f"{url} lacks {missing}",
                    "" if not missing else f"the server there is not rsft's or lacks the bot's package; {start} "
                                           f"(--actions PKG for a package other than `actions`)")]
    headers = {k: _expand(str(v)) for k, v in (endpoint.get("headers") or {}).items()}
    code = _post_status(url, headers, timeout)  # an empty call: 400 once past the token check, 401 before it
    checks.append(Check("action server token", code == 400,
                        "the endpoint's X-Rsft-Action-Token is accepted" if code == 400 else f"webhook answered {code}",
                        f"send the action server's token: in {path} under action_endpoint add `headers: "
                        f"{{{TOKEN_HEADER}: ${{RSFT_ACTION_TOKEN}}}}` and start Rasa and the action server with the "
                        f"same RSFT_ACTION_TOKEN"))
    return checks


def _rasa_status(rasa_url: str, token: str | None, timeout: float) -> list[Check]:
    start = f"start Rasa: `rasa run --enable-api --auth-token=\"$RSFT_RASA_TOKEN\"` (it must listen at {rasa_url})"
    try:
        with urllib.request.urlopen(f"{rasa_url}/", timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        return [Check("Rasa server", False, f"{rasa_url} does not answer ({_reason(exc)})", start)]
    checks = [Check("Rasa server", True, f"{rasa_url} answers")]
    open_code = _get_status(f"{rasa_url}/status", timeout)
    if not token:
        return [*checks, Check("Rasa API token", False, "no token given ($RSFT_RASA_TOKEN or --token)",
                               "pass the token Rasa was started with (`--auth-token`)")]
    try:
        status = _get_json(f"{rasa_url}/status?token={urllib.parse.quote(token)}", timeout)
    except (OSError, ValueError) as exc:
        return [*checks, Check("Rasa API token", False, f"/status refused the token ({_reason(exc)})",
                               "pass the token Rasa was started with (`--auth-token`), and start it with "
                               "--enable-api")]
    checks += [Check("Rasa API token", open_code in (401, 403),
                    "accepted; strangers get " + str(open_code) if open_code in (401, 403)
                    else f"Rasa's API answers without a token ({open_code})",
                    "start Rasa with `--auth-token` so that only you can use its HTTP API")]
    model = status.get("model_file") if isinstance(status, dict) else None
    checks.append(Check("Rasa model", bool(model), f"serving {model}" if model else "no model loaded",
                        "train it: `rasa train --domain domain`, then restart Rasa"))
    return checks


def _feedback_buttons(rasa_url: str, token: str | None, choices: int, timeout: float) -> Check:
    """Does the domain of the model Rasa serves offer "Was it one of these?" after a 👎? The action server offers it
    only to a domain with action_choose, so a bot integrated before it existed silently learns less from each
    unhappy customer. "Talk to a person" (action_handoff, our bot's form; `rsft init-rasa` does not add it) is
    reported, never required."""
    try:
        domain = _get_json(f"{rasa_url}/domain?token={urllib.parse.quote(token or '')}", timeout)
        actions = set(domain.get("actions") or [])
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        return Check("feedback buttons", False, f"/domain failed ({_reason(exc)})", "see the Rasa server's log")
    person = "'Talk to a person'" if HANDOFF_ACTION in actions else "no 'Talk to a person' (no action_handoff)"
    if not choices:
        return Check("feedback buttons", True, f"choices are off (feedback.choices: 0); {person}")
    offers = CHOOSE_ACTION in actions
    detail = (f"after a 👎 the bot offers 'Was it one of these?'; {person}" if offers
              else f"the served model's domain lacks {CHOOSE_ACTION}: a 👎 offers no choices, so picks never teach")
    return Check("feedback buttons", offers, detail, "run `rsft init-rasa` on the bot again (it adds action_choose "
                 "and the choose intent), then `rasa train`")


def _route(rasa_url: str, token: str | None, text: str, question: bool, bot: Path, timeout: float) -> Check:
    what = "question" if question else "off-topic"
    try:
        parsed = _post_json(f"{rasa_url}/model/parse?token={urllib.parse.quote(token or '')}", {"text": text}, timeout)
        intent = parsed["intent"]["name"]
        confidence = float(parsed["intent"].get("confidence") or 0.0)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Check(f"{what} {text!r}", False, f"/model/parse failed ({_reason(exc)})", "see the Rasa server's log")
    to_answer = intent in ANSWER_INTENTS
    where = f"{intent} {confidence:.2f} -> " + (ANSWER_ACTION if to_answer else "not a store answer")
    if question:
        return Check(f"question {text!r}", to_answer, where,
                     f"the bot's intent {intent!r} catches store questions: add examples like this one under "
                     f"ask_question in {bot / 'data' / 'rsft' / 'nlu.yml'} (or remove overlapping ones from "
                     f"{intent!r}) and train again")
    return Check(f"off-topic {text!r}", not to_answer, where,
                 f"add examples like this one under out_of_scope in {bot / 'data' / 'rsft' / 'nlu.yml'} and train "
                 f"again")


def _bot_actions(bot: Path) -> set[str]:
    """Custom actions the bot's own domain files declare (they must be served too)."""
    names: set[str] = set()
    files = [bot / "domain.yml"] if (bot / "domain.yml").is_file() else sorted((bot / "domain").rglob("*.y*ml"))
    for path in files:
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for item in content.get("actions") or [] if isinstance(content, dict) else []:
            names.update(item.keys() if isinstance(item, dict) else [str(item)])
    return {name for name in names if not name.startswith("utter_")}


def _expand(value: str) -> str:
    return _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)


def _get_json(url: str, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def _post_json(url: str, body: dict[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def _get_status(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post_status(url: str, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, b"{}", {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return str(getattr(exc, "reason", None) or exc)
