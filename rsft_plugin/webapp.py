"""The web server: the customer chat page, and the operator API (retrain trigger and round status).

The chat page is public; every /api route needs the operator token as `Authorization: Bearer <token>`
(RSFT_OPERATOR_TOKEN, or the one generated into var/run/secrets/operator-token). This process never loads a
model: a triggered round runs as its own `rsft retrain` process, and status is read from the SQLite log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiohttp import web

from .config import Config
from .registry import Registry
from .secrets import OPERATOR_TOKEN, get_secret, matches
from .store import Store, process_alive

STATIC_DIR = Path(__file__).parent / "web" / "static"
_ROUND_FIELDS = ("id", "status", "stage", "progress", "message", "reason", "started_at", "finished_at",
                 "live_version", "new_version", "rule")


def build_app(config: Config, rasa_url: str, shop_name: str = "Northwind Goods") -> web.Application:
    """`/` chat page, `/static/*`, `/config.json`, `/healthz`; operator API under `/api/`."""
    app = web.Application(middlewares=[_operator_only(get_secret(config.paths.run_dir, OPERATOR_TOKEN))])
    settings = {"rasa_url": rasa_url.rstrip("/"), "shop_name": shop_name}

    async def chat_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "chat.html", headers={"Cache-Control": "no-cache"})

    async def page_config(request: web.Request) -> web.Response:
        return web.json_response(settings, headers={"Cache-Control": "no-store"})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"live_version": Registry(config.paths.models_dir).live_name(),
                                  "round": _latest_round(config)})

    async def trigger(request: web.Request) -> web.Response:
        current = _latest_round(config)
        if current and current["status"] == "running":
            return web.json_response({"error": "a round is already running", "round": current}, status=409)
        command = [sys.executable, "-m", "rsft_plugin.cli"]
        if config.source:
            command += ["--config", str(config.source)]
        log_dir = config.paths.run_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / "rounds.log").open("ab") as log:
            process = subprocess.Popen([*command, "retrain"], stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return web.json_response({"started": True, "pid": process.pid,
                                  "status_url": str(request.url.with_path("/api/status"))}, status=202)

    app.router.add_get("/", chat_page)
    app.router.add_get("/config.json", page_config)
    app.router.add_get("/healthz", health)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/rounds", trigger)
    return app


def _operator_only(token: str):
    @web.middleware
    async def check(request: web.Request, handler):
        if request.path.startswith("/api/"):
            header = request.headers.get("Authorization", "")
            given = header[len("Bearer "):] if header.startswith("Bearer ") else None
            if not matches(given, token):
                return web.json_response({"error": "operator token required (Authorization: Bearer ...)"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check


def _latest_round(config: Config) -> dict | None:
    store = Store(config.paths.db)
    try:
        store.fail_abandoned_rounds(process_alive)
        rounds = store.rounds(1)
    finally:
        store.close()
    return {k: rounds[0][k] for k in _ROUND_FIELDS} if rounds else None


def serve(config: Config, host: str, port: int, rasa_url: str) -> None:
    web.run_app(build_app(config, rasa_url), host=host, port=port, print=None, access_log=None)
