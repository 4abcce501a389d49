"""A fake of Rasa's HTTP API as the agent desk uses it: records appended events and executed actions.

`tracker(conversation_id)` decides what `GET /conversations/{id}/tracker` returns (default: an empty tracker);
`down = True` answers 503 to everything; a wrong `?token=` gets 401.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from aiohttp import web
from aiohttp.test_utils import TestServer


class FakeRasa:
    def __init__(self, token: str, tracker: Optional[Callable[[str], Dict[str, Any]]] = None):
        self.token = token
        self.make_tracker = tracker or (lambda cid: {"sender_id": cid, "slots": {}, "events": []})
        self.events: List[tuple] = []  # (conversation id, output_channel, execute_side_effects, events)
        self.actions: List[tuple] = []  # (conversation id, output_channel, action name)
        self.down = False
        self.url = ""
        self.app = web.Application()
        self.app.router.add_get("/conversations/{cid}/tracker", self._tracker)
        self.app.router.add_post("/conversations/{cid}/tracker/events", self._append)
        self.app.router.add_post("/conversations/{cid}/execute", self._execute)
        self._server: Optional[TestServer] = None

    async def start(self) -> "FakeRasa":
        self._server = TestServer(self.app)
        await self._server.start_server()
        self.url = str(self._server.make_url("")).rstrip("/")
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    def _check(self, request: web.Request) -> None:
        if request.query.get("token") != self.token:
            raise web.HTTPUnauthorized()
        if self.down:
            raise web.HTTPServiceUnavailable()

    async def _tracker(self, request: web.Request) -> web.Response:
        self._check(request)
        assert request.query.get("include_events") == "ALL"
        return web.json_response(self.make_tracker(request.match_info["cid"]))

    async def _append(self, request: web.Request) -> web.Response:
        self._check(request)
        self.events.append((request.match_info["cid"], request.query.get("output_channel"),
                            request.query.get("execute_side_effects"), await request.json()))
        return web.json_response({"sender_id": request.match_info["cid"]})

    async def _execute(self, request: web.Request) -> web.Response:
        self._check(request)
        self.actions.append((request.match_info["cid"], request.query.get("output_channel"),
                             (await request.json())["name"]))
        return web.json_response({"tracker": {}, "messages": []})

    def bot_texts(self, conversation_id: str) -> List[Dict[str, Any]]:
        return [event for cid, _, _, events in self.events if cid == conversation_id
                for event in events if event.get("event") == "bot"]
