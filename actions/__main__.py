"""Run the action server in one process: `python -m actions --port 5055`.

`python -m rasa_sdk --actions actions` works too, but Sanic 25 then imports the actions (and so loads the model)
in a manager process and again in a spawned worker. One process loads the model once and keeps one pointer
watcher, which is what rsft wants.
"""

from __future__ import annotations

import argparse
import logging
import os

from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor


def main() -> None:
    parser = argparse.ArgumentParser(description="rsft action server (rasa-sdk, single process)")
    parser.add_argument("--host", default=os.environ.get("SANIC_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=5055)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s - %(message)s")
    executor = ActionExecutor()
    executor.register_package("actions")  # imports actions.actions, which boots the assistant
    app = create_app(executor, cors_origins=None)
    app.run(host=args.host, port=args.port, single_process=True, access_log=False, motd=False)


if __name__ == "__main__":
    main()
