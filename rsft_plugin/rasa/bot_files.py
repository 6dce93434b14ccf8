"""`rsft init-rasa`: add rsft's intents, examples, responses and rules beside an existing Rasa 3.6 bot's own files.

Rasa merges several domain files only from a directory (`rasa train --domain DIR` reads every domain file under
it) and every training-data file under `data/`. So rsft writes files of its own and never rewrites the bot's:

    domain/rsft.yml         our intents (ask_question, rate, choose, out_of_scope), entities, responses, actions
    data/rsft/nlu.yml       training examples of our intents (a domain intent without examples is never predicted)
    data/rsft/rules.yml     ask_question and nlu_fallback -> action_answer, rate -> action_rate,
                            choose -> action_choose, out_of_scope -> refusal
    rsft.yml                rsft's own config with explicit paths (state in .rsft/)

rsft's hand-off to a person (intent human_handoff, handoff_form, action_handoff) is not added: a bot may hand over
in its own way, and rsft adds no slots or forms to a foreign domain. The actions see that the domain has no
`action_handoff` and offer no "Talk to a person" button (rsft_plugin/rasa/actions.py). A bot set up by an older
rsft, whose domain file has no `action_choose`, is offered no "Was it one of these?" choices either.

Two files exist once per bot, so rsft adds to them only what is missing: `endpoints.yml` gets an `action_endpoint`
when it has none (appended; the rest of the file is left as it is), and with `channel=True` `credentials.yml` names
our REST channel (rsft_plugin.rasa.channels.RestWithFallback), which replaces Rasa's `rest:` entry (both serve
/webhooks/rest/). A bot whose domain is one `domain.yml` file cannot take a second domain file; with `move_domain`
it is moved, unchanged, into `domain/`, otherwise `init_rasa` stops and says so. The same for names the bot already
uses for something else. Running it again changes nothing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import RsftError
from ..secrets import ACTION_TOKEN
from . import CHANNEL_CLASS, TOKEN_HEADER

FILES = Path(__file__).parent / "files"
STATE_DIR = ".rsft"
DOMAIN_FILE = Path("domain") / "rsft.yml"
NLU_FILE = Path("data") / "rsft" / "nlu.yml"
RULES_FILE = Path("data") / "rsft" / "rules.yml"
# Names the bot may define itself; then its own win and ours are left out (its rules already handle them).
SHAREABLE = {"intents": {"out_of_scope"}, "responses": {"utter_default", "utter_out_of_scope"}}
_DOMAIN_KEYS = ("intents", "entities", "slots", "forms", "actions", "responses", "session_config", "e2e_actions")


class InitRasaStopped(RsftError):
    """The bot needs a change rsft does not make on its own; the message says which."""


@dataclass
class InitResult:
    bot_dir: Path
    written: list[Path] = field(default_factory=list)  # created or appended to
    unchanged: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know or do next

    @property
    def changed(self) -> bool:
        return bool(self.written)


def init_rasa(bot_dir: Path, *, channel: bool = False, move_domain: bool = False, action_url: str | None = None,
              rasa_bin: Path | None = None, answers: Path | None = None, golden: Path | None = None) -> InitResult:
    """Add rsft's files to the Rasa project in `bot_dir` (see the module docstring).

    Raises:
        InitRasaStopped: the bot is not a Rasa 3 project, or it needs a change rsft refuses to make silently.
    """
    bot_dir = bot_dir.resolve()
    result = InitResult(bot_dir)
    if not (bot_dir / "config.yml").is_file():
        raise InitRasaStopped(f"{bot_dir} has no config.yml: is it a Rasa project? (run `rasa init` to make one)")
    if not (bot_dir / "data").is_dir():
        raise InitRasaStopped(f"{bot_dir} has no data/ folder; rsft adds its training data to data/rsft/")
    _domain_dir(bot_dir, move_domain, result)
    bot_domain = _bot_domain(bot_dir)
    left_out = _check_names(bot_domain)
    _write(bot_dir / DOMAIN_FILE, _domain_text(left_out), result)
    _write(bot_dir / NLU_FILE, _nlu_text(left_out), result)
    _write(bot_dir / RULES_FILE, _rules_text(left_out), result)
    _add_action_endpoint(bot_dir, action_url or "http://127.0.0.1:5055/webhook", result)
    if channel:
        _add_channel(bot_dir, result)
    _write(bot_dir / "rsft.yml", _config_text(bot_dir, rasa_bin, answers, golden), result, ours=False)
    if bot_domain.get("actions"):
        result.notes.append(f"the bot's own actions ({', '.join(sorted(map(str, bot_domain['actions'])))}) are "
                            f"served by the same action server: `python -m rsft_plugin.rasa` in {bot_dir}")
    return result


def rsft_domain() -> dict[str, Any]:
    """Our domain file's content (the template), for checks."""
    return yaml.safe_load((FILES / "domain.yml").read_text(encoding="utf-8"))


# ---- the domain --------------------------------------------------------------------------------------------------


def _domain_dir(bot_dir: Path, move_domain: bool, result: InitResult) -> None:
    single, folder = bot_dir / "domain.yml", bot_dir / "domain"
    if single.is_file() and folder.is_dir():
        raise InitRasaStopped(f"{bot_dir} has both domain.yml and domain/; Rasa trains with one of them. Move "
                              f"domain.yml into domain/ (`mv domain.yml domain/`) and run `rsft init-rasa` again")
    if folder.is_dir():
        return
    if not single.is_file():
        raise InitRasaStopped(f"{bot_dir} has no domain.yml and no domain/ folder")
    if not move_domain:
        raise InitRasaStopped(
            f"the bot's domain is one file ({single}). Rasa 3.6 merges several domain files only from a folder "
            f"(`rasa train --domain domain`), and rsft does not edit your domain.yml. Move it, unchanged, with "
            f"`mkdir domain && mv domain.yml domain/`, or run `rsft init-rasa --move-domain` to have it moved; "
            f"then train with `rasa train --domain domain`")
    folder.mkdir()
    shutil.move(str(single), folder / "domain.yml")
    result.written.append(folder / "domain.yml")
    result.notes.append("moved domain.yml to domain/domain.yml (unchanged): train with `rasa train --domain domain`")


def _bot_domain(bot_dir: Path) -> dict[str, Any]:
    """The bot's own domain (every domain file under domain/ but ours), merged the simple way: lists and keys."""
    merged: dict[str, Any] = {}
    ours = (bot_dir / DOMAIN_FILE).resolve()
    for path in sorted((bot_dir / "domain").rglob("*.y*ml")):
        if path.resolve() == ours:
            continue
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InitRasaStopped(f"{path} is not valid YAML ({exc}); fix it first") from exc
        if not isinstance(content, dict) or not any(key in content for key in _DOMAIN_KEYS):
            continue
        for key in ("intents", "entities", "actions"):
            merged.setdefault(key, []).extend(_names(content.get(key)))
        for key in ("responses", "slots", "forms"):
            merged.setdefault(key, {}).update(content.get(key) or {})
    return merged


def _names(items: Any) -> list[str]:
    """Intent/entity/action names; Rasa also allows `- name: {properties}` entries."""
    names: list[str] = []
    for item in items or []:
        names.extend(item.keys() if isinstance(item, dict) else [str(item)])
    return names


def _check_names(bot: dict[str, Any]) -> set[str]:
    """Names of ours to leave out because the bot has its own; stops when the bot uses one of our core names."""
    ours = rsft_domain()
    clashes, left_out = [], set()
    for key in ("intents", "actions", "responses"):  # entities of the same name merge without harm
        theirs = set(_names(bot.get(key))) if key != "responses" else set(bot.get("responses") or {})
        mine = set(_names(ours.get(key))) if key != "responses" else set(ours["responses"])
        for name in sorted(mine & theirs):
            if name in SHAREABLE.get(key, set()):
                left_out.add(name)
            else:
                clashes.append(f"{key[:-1]} {name!r}")
    if clashes:
        raise InitRasaStopped(f"the bot's domain already defines {', '.join(clashes)}, which rsft needs for its "
                              f"own intents and actions; rename yours (or remove them if they are an older copy "
                              f"of rsft's) and run `rsft init-rasa` again")
    return left_out


def _domain_text(left_out: set[str]) -> str:
    template = (FILES / "domain.yml").read_text(encoding="utf-8")
    if not left_out:
        return template
    domain = yaml.safe_load(template)
    domain["intents"] = [name for name in domain["intents"] if name not in left_out]
    domain["responses"] = {k: v for k, v in domain["responses"].items() if k not in left_out}
    if "out_of_scope" in left_out:  # the bot handles off-topic lines itself
        domain["responses"].pop("utter_out_of_scope", None)
    return _header(template) + yaml.safe_dump(domain, sort_keys=False, allow_unicode=True, width=110)


def _nlu_text(left_out: set[str]) -> str:
    template = (FILES / "nlu.yml").read_text(encoding="utf-8")
    if "out_of_scope" not in left_out:
        return template
    nlu = yaml.safe_load(template)
    nlu["nlu"] = [block for block in nlu["nlu"] if block["intent"] != "out_of_scope"]
    return _header(template) + yaml.safe_dump(nlu, sort_keys=False, allow_unicode=True, width=110)


def _rules_text(left_out: set[str]) -> str:
    template = (FILES / "rules.yml").read_text(encoding="utf-8")
    if "out_of_scope" not in left_out:
        return template
    rules = yaml.safe_load(template)
    rules["rules"] = [rule for rule in rules["rules"] if rule["steps"][0].get("intent") != "out_of_scope"]
    return _header(template) + yaml.safe_dump(rules, sort_keys=False, allow_unicode=True, width=110)


def _header(template: str) -> str:
    return "".join(line + "\n" for line in template.splitlines() if line.startswith("#")) + "\n"


# ---- files of ours, and the two shared files ------------------------------------------------------------------


def _write(path: Path, text: str, result: InitResult, ours: bool = True) -> None:
    """Create `path`; leave it when it already holds `text`; never replace a file that differs."""
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            result.unchanged.append(path)
        else:
            what = "edited since rsft wrote it, or written by another rsft version" if ours else "yours"
            result.notes.append(f"kept {path} ({what}); delete it and run `rsft init-rasa` again for rsft's version")
            result.unchanged.append(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    result.written.append(path)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InitRasaStopped(f"{path} is not valid YAML ({exc}); fix it first") from exc
    if content is not None and not isinstance(content, dict):
        raise InitRasaStopped(f"{path}: the top level must be a mapping")
    return content or {}


def _append(path: Path, block: str, result: InitResult) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    separator = "" if not existing or existing.endswith("\n\n") else ("\n" if existing.endswith("\n") else "\n\n")
    path.write_text(existing + separator + block, encoding="utf-8")
    result.written.append(path)


def _add_action_endpoint(bot_dir: Path, url: str, result: InitResult) -> None:
    path = bot_dir / "endpoints.yml"
    endpoint = _load_yaml(path).get("action_endpoint")
    if endpoint:
        found = endpoint.get("url") if isinstance(endpoint, dict) else endpoint
        result.unchanged.append(path)
        if found != url:
            result.notes.append(f"endpoints.yml already has an action_endpoint ({found}); rsft's action server "
                                f"must be the one answering there (`rsft doctor` checks it)")
        return
    _append(path, f"# Added by `rsft init-rasa`: one action server for the bot's own actions and rsft's\n"
                  f"# (`python -m rsft_plugin.rasa`, loopback only). It answers only calls that carry its token:\n"
                  f"# start Rasa and the action server with the same RSFT_ACTION_TOKEN in their environment.\n"
                  f"action_endpoint:\n  url: \"{url}\"\n  headers:\n"
                  f"    {TOKEN_HEADER}: ${{{ACTION_TOKEN[1]}}}\n", result)


def _add_channel(bot_dir: Path, result: InitResult) -> None:
    path = bot_dir / "credentials.yml"
    credentials = _load_yaml(path)
    if CHANNEL_CLASS in credentials:
        result.unchanged.append(path)
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    if "rest" in credentials:
        # Rasa's `rest:` and ours serve the same URL: ours replaces it, and the old line stays as a comment.
        lines = [f"# {line.rstrip()}  # replaced by rsft's channel below (rsft init-rasa --channel)\n"
                 if line.rstrip() == "rest:" else line for line in lines]
        if any(line.startswith("rest:") for line in lines):
            raise InitRasaStopped(f"{path}: the `rest:` entry has settings; rsft's channel replaces it. Replace "
                                  f"`rest:` by `{CHANNEL_CLASS}:` yourself (it takes no settings)")
        path.write_text("".join(lines), encoding="utf-8")
    _append(path, f"# Added by `rsft init-rasa --channel`: Rasa's REST channel (same URL, /webhooks/rest/webhook)\n"
                  f"# that answers with utter_default instead of silence when no action answered. Rasa imports it\n"
                  f"# from rsft's package: start Rasa with PYTHONPATH as `rsft init-rasa` printed.\n"
                  f"{CHANNEL_CLASS}:\n", result)


def _config_text(bot_dir: Path, rasa_bin: Path | None, answers: Path | None, golden: Path | None) -> str:
    data = Path(__file__).resolve().parents[2] / "data"  # the sample bank of a source checkout
    answers = answers or data / "answers.yml"
    golden = golden or data / "golden.csv"
    if not answers.exists():
        raise InitRasaStopped(f"no answer bank at {answers}; pass --answers PATH (a YAML bank like data/answers.yml)")
    rasa = rasa_bin or Path(shutil.which("rasa") or "rasa")
    return (f"# rsft's configuration for the Rasa bot in this folder, written by `rsft init-rasa`. Relative paths\n"
            f"# are relative to this file. rsft commands find it as ./rsft.yml, $RSFT_CONFIG or --config.\n"
            f"paths:\n"
            f"  db: {STATE_DIR}/rsft.db                    # turns, ratings, rounds\n"
            f"  models_dir: {STATE_DIR}/models             # model versions and the LIVE pointer\n"
            f"  rounds_dir: {STATE_DIR}/rounds             # round reports\n"
            f"  run_dir: {STATE_DIR}/run                   # secrets and logs\n"
            f"  tracker_db: {STATE_DIR}/rasa-tracker.db    # used only by `rsft serve`\n"
            f"  answers: {answers.resolve()}\n"
            f"  golden: {golden.resolve()}\n"
            f"  bot_dir: .\n"
            f"  rasa_bin: {rasa}\n"
            f"server:\n"
            f"  host: 127.0.0.1          # every server binds to loopback only\n"
            f"  rasa_port: 5005\n"
            f"  action_port: 5055\n")
