"""One action server for a bot's own actions and rsft's: `python -m rsft_plugin.rasa`, one process, loopback.

    python -m rsft_plugin.rasa [--config rsft.yml] [--actions PKG[,PKG...]] [--host 127.0.0.1] [--port 5055]

It registers rsft's actions (rsft_plugin.rasa.actions, which loads the live model once) and then the bot's own
action packages, the way `rasa_sdk --actions` does (ActionExecutor.register_package, once per package). By default
that is the `actions` package of the bot folder named in rsft.yml (paths.bot_dir), when it has one; `--actions`
names others (comma-separated, importable from the bot folder). The bot's actions must run on our Python (3.11)
and rasa-sdk (>=3.11, <4; the rasa-sdk that Rasa 3.6 pins, 3.6.x, does not install on 3.11): a rasa-sdk 3.x server
speaks the same webhook protocol to any Rasa 3.x.

`python -m rasa_sdk --actions actions` would work too, but Sanic 25 then imports the actions (and so loads the
model) in a manager process and again in a spawned worker, bound to 0.0.0.0. One process loads the model once and
keeps one pointer watcher.

Only Rasa may call the webhook: every POST /webhook must carry the shared secret (RSFT_ACTION_TOKEN, else the
installation's secret file in paths.run_dir) in the X-Rsft-Action-Token header, which the bot's endpoints.yml
sends, or it gets a 401 before the executor runs. /health and /actions stay open.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Request, response
from sanic.response import HTTPResponse

from ..config import CONFIG_ENV, Config, load_config
from ..config_file import require_file
from ..errors import ConfigError, RsftError
from ..parts import build_parts
from ..secrets import ACTION_TOKEN, get_secret, matches
from ..versions import create_initial_version
from . import ACTIONS_MODULE, TOKEN_HEADER

log = logging.getLogger(__name__)



def problem_with(action_call: Any) -> str | None:
    """Why an action call cannot be run, or None. rasa-sdk would answer these with a 500; we answer 400."""
    if not isinstance(action_call, dict):
        return "the body must be a JSON object"
    if not isinstance(action_call.get("next_action"), str):
        return "next_action must be a string"
    tracker = action_call.get("tracker")
    if not isinstance(tracker, dict) or not isinstance(tracker.get("sender_id"), str):
        return "tracker must be an object with a string sender_id"
    for key, kind in (("latest_message", dict), ("slots", dict), ("events", list), ("active_loop", dict)):
        if tracker.get(key) is not None and not isinstance(tracker[key], kind):
            return f"tracker.{key} must be a {kind.__name__}"
    latest = tracker.get("latest_message") or {}
    if latest.get("entities") is not None and not isinstance(latest["entities"], list):
        return "latest_message.entities must be a list"
    if action_call.get("domain") is not None and not isinstance(action_call["domain"], dict):
        return "domain must be an object"
    return None


async def _refuse_malformed_calls(request: Request) -> HTTPResponse | None:
    if request.path != "/webhook" or request.method != "POST" or request.headers.get("Content-Encoding"):
        return None
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return response.json({"error": "the body is not JSON"}, status=400)
    problem = problem_with(body)
    return response.json({"error": problem}, status=400) if problem else None


def _require_token(expected: str):
    async def require_token(request: Request) -> HTTPResponse | None:
        if request.path.rstrip("/") != "/webhook":
            return None
        if not matches(request.headers.get(TOKEN_HEADER), expected):
            return response.json({"error": f"missing or wrong {TOKEN_HEADER}"}, status=401)
        return None

    return require_token


def _expected_token(config: Config) -> str:
    """RSFT_ACTION_TOKEN when set (the launcher sets it), else the installation's secret file (run_dir)."""
    return os.environ.get(ACTION_TOKEN[1]) or get_secret(config.paths.run_dir, ACTION_TOKEN)


def bot_action_packages(bot_dir: Path) -> list[str]:
    """The bot's own action package, as `rasa init` makes it: `actions/` (or `actions.py`) in the bot folder."""
    return ["actions"] if (bot_dir / "actions" / "__init__.py").is_file() or (bot_dir / "actions.py").is_file() else []


def build_executor(config: Config, packages: list[str]) -> ActionExecutor:
    """rsft's actions, then the bot's packages (imported from paths.bot_dir), in one executor.

    Raises:
        ModelLoadError: no live model can be loaded.
        ConfigError: a bot package defines an action under one of rsft's names.
    """
    executor = ActionExecutor()
    executor.register_package(ACTIONS_MODULE)  # imports rsft_plugin.rasa.actions, which boots the assistant
    ours = dict(executor.actions)
    if packages:
        sys.path.insert(0, str(config.paths.bot_dir))
    for package in packages:
        executor.register_package(package)
    taken = sorted(name for name in ours  # rasa-sdk keeps the last action registered under a name
                   if getattr(getattr(executor.actions[name], "__self__", None), "__module__", "") != ACTIONS_MODULE)
    if taken:
        raise ConfigError(f"the bot's actions {taken} have the names of rsft's actions; rename the bot's")
    return executor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="rsft action server: the bot's actions and rsft's, one process")
    parser.add_argument("--config", default=None, help="rsft.yml to use (default: $RSFT_CONFIG or ./rsft.yml)")
    parser.add_argument("--host", default=os.environ.get("SANIC_HOST", "127.0.0.1"),
                        help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=None, help="default: server.action_port of rsft.yml (5055)")
    parser.add_argument("--actions", action="append", default=None,
                        help="the bot's action packages, comma-separated (default: the bot folder's `actions`)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s - %(message)s")
    try:
        config = require_file(load_config(args.config))  # --config, $RSFT_CONFIG or ./rsft.yml; never defaults
        log.info("rsft config: %s", config.source)
        packages = ([p.strip() for given in args.actions for p in given.split(",") if p.strip()]
                    if args.actions is not None else bot_action_packages(config.paths.bot_dir))
        with build_parts(config) as parts:  # closed before runtime.boot() builds the server's own
            create_initial_version(parts)  # the first start makes the pretrained version live
        os.environ[CONFIG_ENV] = str(config.source)  # the actions' runtime.boot() reads the same file
        executor = build_executor(config, packages)
    except RsftError as exc:
        sys.exit(f"rsft action server: not starting: {exc}")
    log.info("serving %s from %s", ", ".join(sorted(executor.actions)), ", ".join([ACTIONS_MODULE, *packages]))
    app = create_app(executor, cors_origins=None)
    app.register_middleware(_require_token(_expected_token(config)), "request")  # first: strangers learn nothing
    app.register_middleware(_refuse_malformed_calls, "request")
    app.run(host=args.host, port=args.port or config.server.action_port, single_process=True, access_log=False,
            motd=False)


if __name__ == "__main__":
    main()
