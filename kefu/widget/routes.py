"""Serve the web chat widget: ``/widget.js`` (the embeddable script), ``/chat`` (a demo page with the widget
open) and ``/static/vendor/socket.io.min.js`` (the socket.io client, installed from npm by ``make install``).

The widget talks straight to Rasa's socket.io channel (``kefu.channels.socketio``); ``server_url`` is Rasa's
URL as the customer's browser reaches it (empty: the page's own host on port 5005).
"""
from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from kefu.db import PROJECT_ROOT

STATIC = Path(__file__).resolve().parent / "static"
SOCKETIO_CLIENT = PROJECT_ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
SERVER_KEY = web.AppKey("widget_server", str)
NO_CACHE = {"Cache-Control": "no-cache"}


async def widget_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "widget.js", headers={**NO_CACHE, "Content-Type": "text/javascript"})


async def socketio_client(request: web.Request) -> web.StreamResponse:
    if not SOCKETIO_CLIENT.exists():
        raise web.HTTPNotFound(text="socket.io client not installed: run `make install` (npm ci)")
    return web.FileResponse(SOCKETIO_CLIENT, headers={"Content-Type": "text/javascript",
                                                      "Cache-Control": "public, max-age=86400"})


async def chat_page(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY] or f"{request.scheme}://{request.host.split(':')[0]}:5005"
    widget_url = f"{request.scheme}://{request.host}/widget.js"
    page = (STATIC / "chat.html").read_text(encoding="utf-8")
    page = page.replace("__SERVER__", html.escape(server, quote=True)).replace(
        "__WIDGET_URL__", html.escape(widget_url, quote=True))
    return web.Response(text=page, content_type="text/html", headers=NO_CACHE)


def add_widget_routes(app: web.Application, server_url: str = "") -> None:
    app[SERVER_KEY] = server_url
    app.router.add_get("/widget.js", widget_js)
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/static/vendor/socket.io.min.js", socketio_client)
