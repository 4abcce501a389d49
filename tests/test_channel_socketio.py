"""The web widget's socket.io channel (kefu.channels.socketio) against a real `rasa run`, with a Python client
speaking socket.io over long-polling as the browser widget does."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any, List

import aiohttp
import pytest
import socketio

from kefu.channels.common import CLIPPED_NOTICE, MAX_MESSAGE_CHARS


class Widget:
    """A socket.io client that records every bot message."""

    def __init__(self):
        self.client = socketio.AsyncClient(reconnection=False)
        self.messages: List[Any] = []
        self.confirmed: asyncio.Queue = asyncio.Queue()
        self.required = asyncio.Event()
        self.client.on("bot_uttered", self.messages.append)
        self.client.on("session_confirm", self.confirmed.put_nowait)
        self.client.on("session_required", lambda *_: self.required.set())

    async def connect(self, url: str) -> "Widget":
        await self.client.connect(url, transports=["polling"], socketio_path="/socket.io")
        return self

    async def session(self, session_id: Any = None) -> str:
        await self.client.emit("session_request", {"session_id": session_id})
        return await asyncio.wait_for(self.confirmed.get(), 10)

    async def say(self, session_id: str, text: str, replies: int = 1, timeout: float = 30) -> List[Any]:
        start = len(self.messages)
        await self.client.emit("user_uttered", {"message": text, "session_id": session_id})
        return await self.wait(start + replies, timeout)

    async def wait(self, count: int, timeout: float = 30) -> List[Any]:
        for _ in range(int(timeout * 10)):
            if len(self.messages) >= count:
                break
            await asyncio.sleep(0.1)
        return self.messages

    async def close(self) -> None:
        await self.client.disconnect()


@pytest.fixture
async def widget(rasa_stack):
    client = await Widget().connect(rasa_stack.url)
    yield client
    await client.close()


async def test_a_message_gets_the_bot_reply_with_buttons(widget):
    session_id = await widget.session()
    messages = await widget.say(session_id, "转人工")
    assert any("人工" in (m.get("text") or "") for m in messages)
    buttons = [b for m in messages for b in m.get("quick_replies") or []]
    assert {"content_type": "text", "title": "我要留言", "payload": "/leave_message"} in buttons
    messages = await widget.say(session_id, "我要退货", replies=1)
    assert "订单号" in "".join(m.get("text") or "" for m in messages)


async def test_session_ids_are_resumed_only_when_well_formed(widget):
    mine = uuid.uuid4().hex
    assert await widget.session(mine) == mine  # a reload keeps its conversation
    for forged in ("tg:12345", "../../etc", "x" * 500, 42, None):
        other = await widget.session(forged)
        assert other != forged and len(other) == 32  # a fresh session instead


async def test_malformed_events_are_ignored_and_the_channel_keeps_working(widget):
    await widget.client.emit("user_uttered", "not an object")
    await widget.client.emit("user_uttered", {"message": 123})
    await widget.client.emit("user_uttered", {"message": "你好", "session_id": "whatever"})
    await asyncio.wait_for(widget.required.wait(), 10)  # no session yet: asked to request one
    session_id = await widget.session()
    messages = await widget.say(session_id, "你好")
    assert messages and messages[-1].get("text")


async def test_oversized_messages_are_cut_with_a_notice(widget):
    session_id = await widget.session()
    messages = await widget.say(session_id, "查订单" + "啊" * (MAX_MESSAGE_CHARS * 50), replies=2)
    assert messages[0]["text"] == CLIPPED_NOTICE
    assert len(messages) >= 2


async def test_agent_messages_are_pushed_with_the_agents_name(widget, rasa_stack):
    session_id = await widget.session()
    await widget.say(session_id, "你好")
    start = len(widget.messages)
    event = {"event": "bot", "text": "您好，我是人工客服王静", "metadata": {"agent": "A001", "agent_name": "王静"}}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rasa_stack.url}/conversations/web:{session_id}/tracker/events",
                             params={"token": rasa_stack.api_token, "output_channel": "latest",
                                     "execute_side_effects": "true"}, json=[event]) as response:
            assert response.status == 200
    messages = await widget.wait(start + 1, timeout=10)
    assert messages[start] == {"text": "您好，我是人工客服王静", "agent": "A001", "agent_name": "王静"}
