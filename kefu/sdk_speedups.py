"""The action server's hot spot: parsing the tracker Rasa sends with every action call.

``bench/profile_turn.py --gil`` showed the action server spending about 40 % of its CPU in Sanic's
``Request.load_json`` (``ujson.loads``) on the tracker JSON -- every event of the session with its parse data,
about 90 KB after twenty turns, twice per message. ``orjson`` parses it about twice as fast. Bodies orjson
refuses (it is stricter, e.g. about ``NaN``) go to Sanic's own parser, so what is accepted and the 400 for a
malformed body are unchanged.

The action server's modules, SQLAlchemy mappers and pools exist once the first action has run; the long-lived
objects are then frozen out of the garbage collector's full collections (``kefu.heap``).

``apply()`` runs when the action server imports the ``actions`` package; it is idempotent.
"""
from __future__ import annotations

from typing import Any

import orjson

from kefu import heap

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from sanic import request as sanic_request

    fallback = sanic_request.json_loads

    def loads(body: Any) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return fallback(body)

    original = sanic_request.Request.load_json

    def load_json(self: sanic_request.Request, loads: Any = loads) -> Any:
        return original(self, loads)

    sanic_request.Request.load_json = load_json

    from rasa_sdk.executor import ActionExecutor

    run = ActionExecutor.run
    frozen = []

    async def run_then_freeze(self: ActionExecutor, action_call: Any) -> Any:
        try:
            return await run(self, action_call)
        finally:
            if not frozen:
                frozen.append(True)
                heap.freeze_long_lived_objects("first action run")

    ActionExecutor.run = run_then_freeze
