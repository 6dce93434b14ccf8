"""Run the action server in one process: `python -m actions --port 5055`.

`python -m rasa_sdk --actions actions` works too, but Sanic 25 then imports the actions (and so loads the model)
in a manager process and again in a spawned worker. One process loads the model once and keeps one pointer
watcher, which is what rsft wants.

Only Rasa may call the webhook: every POST /webhook must carry the shared secret (RSFT_ACTION_TOKEN, which the
launcher puts in both servers' environments; bot/endpoints.yml sends it as the X-Rsft-Action-Token header), or
it gets a 401 before the executor runs. /health stays open.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Request, response
from sanic.response import HTTPResponse

from rsft_plugin.errors import ModelLoadError
from rsft_plugin.secrets import ACTION_TOKEN, get_secret, matches

TOKEN_HEADER = "X-Rsft-Action-Token"


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


def _expected_token() -> str:
    """RSFT_ACTION_TOKEN when set (the launcher sets it), else the installation's secret file (run_dir)."""
    if os.environ.get(ACTION_TOKEN[1]):
        return os.environ[ACTION_TOKEN[1]]
    from rsft_plugin.config import load_config

    return get_secret(load_config().paths.run_dir, ACTION_TOKEN)  # RSFT_CONFIG or ./rsft.yml


def main() -> None:
    parser = argparse.ArgumentParser(description="rsft action server (rasa-sdk, single process)")
    parser.add_argument("--host", default=os.environ.get("SANIC_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=5055)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s - %(message)s")
    executor = ActionExecutor()
    try:
        executor.register_package("actions")  # imports actions.actions, which boots the assistant
    except ModelLoadError as exc:
        sys.exit(f"rsft action server: not starting: {exc}")
    app = create_app(executor, cors_origins=None)
    app.register_middleware(_require_token(_expected_token()), "request")  # first: strangers learn nothing
    app.register_middleware(_refuse_malformed_calls, "request")
    app.run(host=args.host, port=args.port, single_process=True, access_log=False, motd=False)


if __name__ == "__main__":
    main()
