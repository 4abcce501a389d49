"""One background task per desk loop (assignment, SLA follow-ups, analytics ingestion): started with the app,
cancelled when it stops."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Optional

from aiohttp import web


def run_in_background(app: web.Application, key: web.AppKey,
                      make: Callable[[web.Application], Optional[Coroutine[Any, Any, None]]]) -> None:
    """On startup run the coroutine `make(app)` returns (None: nothing to run) as a task under `key`;
    cancel it on cleanup."""
    async def start(app: web.Application) -> None:
        coroutine = make(app)
        if coroutine is not None:
            app[key] = asyncio.create_task(coroutine)

    async def stop(app: web.Application) -> None:
        task = app.get(key)
        if task is not None:
            task.cancel()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
