"""A merchant's callback endpoint for the callback channel: records every POSTed message, checks signatures."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, List

from aiohttp import web

from fakes.threaded_app import ThreadedApp
from kefu.channels.callback import SIGNATURE_HEADER, sign


class CallbackReceiver:
    def __init__(self, secret: str):
        self.secret = secret
        self.received: List[Dict[str, Any]] = []  # {"message": ..., "signed": bool}
        self._lock = threading.Condition()
        app = web.Application()
        app.router.add_post("/callback", self._receive)
        self.server = ThreadedApp(app, "fake-callback")
        self.url = f"{self.server.url}/callback"

    def start(self) -> "CallbackReceiver":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def channel_credentials(self) -> dict:
        return {"url": self.url, "secret": self.secret}

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = request.headers.get(SIGNATURE_HEADER) == sign(self.secret, body)
        with self._lock:
            self.received.append({"message": json.loads(body), "signed": signed})
            self._lock.notify_all()
        return web.json_response({"ok": True})

    def messages(self, recipient: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if r["message"].get("recipient_id") == recipient]

    def wait(self, recipient: str, n: int = 1, timeout: float = 30) -> List[Dict[str, Any]]:
        deadline = time.time() + timeout
        with self._lock:
            while True:
                found = [r for r in self.received if r["message"].get("recipient_id") == recipient]
                if len(found) >= n:
                    return found
                if time.time() > deadline:
                    raise AssertionError(f"expected {n} callback(s) to {recipient}, got {found}")
                self._lock.wait(max(0.01, deadline - time.time()))
