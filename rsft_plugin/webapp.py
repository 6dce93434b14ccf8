"""The web server of the chat page. It serves static files and tells the page where Rasa is; it owns no data."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "web" / "static"


def build_app(rasa_url: str, shop_name: str = "Northwind Goods") -> web.Application:
    """The aiohttp application: `/` chat page, `/static/*`, `/config.json`, `/healthz`."""
    app = web.Application()
    settings = {"rasa_url": rasa_url.rstrip("/"), "shop_name": shop_name}

    async def chat_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "chat.html", headers={"Cache-Control": "no-cache"})

    async def page_config(request: web.Request) -> web.Response:
        return web.json_response(settings, headers={"Cache-Control": "no-store"})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/", chat_page)
    app.router.add_get("/config.json", page_config)
    app.router.add_get("/healthz", health)
    app.router.add_static("/static/", STATIC_DIR)
    return app


def serve(host: str, port: int, rasa_url: str) -> None:
    web.run_app(build_app(rasa_url), host=host, port=port, print=None, access_log=None)
