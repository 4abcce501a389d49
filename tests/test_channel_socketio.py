"""The web widget's socket.io channel (kefu.channels.socketio) against a real `rasa run`, with a Python client
speaking socket.io over long-polling as the browser widget does."""
from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any, List

import aiohttp
import pytest
import socketio
from rasa.core.channels.channel import UserMessage
from sanic import Sanic

from kefu.channels.common import CLIPPED_NOTICE, MAX_MESSAGE_CHARS, RATE_LIMITED_TEXT
from kefu.channels.socketio import SocketIOInput


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


async def _user_texts(rasa_stack, conversation: str) -> List[str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{rasa_stack.url}/conversations/{conversation}/tracker",
                            params={"token": rasa_stack.api_token}) as response:
            events = (await response.json())["events"]
    return [e["text"] for e in events if e["event"] == "user"]


async def test_a_flooding_conversation_is_told_once_and_the_rest_is_not_processed(widget, rasa_stack):
    session_id = await widget.session()
    started = time.monotonic()
    for number in range(40):
        await widget.client.emit("user_uttered", {"message": f"你好{number}", "session_id": session_id})
        await asyncio.wait_for(widget.client.eio.queue.join(), 10)  # sent: one polling request each (engine.io
        # refuses a batch of more than 16 packets)
    elapsed = time.monotonic() - started
    seen: List[str] = []
    unchanged = 0
    for _ in range(120):  # until Rasa has taken at least the burst and then nothing more for 1.5 s
        await asyncio.sleep(0.5)
        texts = await _user_texts(rasa_stack, f"web:{session_id}")
        unchanged = unchanged + 1 if texts == seen else 0
        seen = texts
        if len(seen) >= 20 and unchanged >= 3:
            break
    # a burst of 20 (the default sender_limit), plus what refilled (2 per second) while the events arrived,
    # in the order sent
    numbers = [int(text[2:]) for text in seen]
    assert 20 <= len(seen) <= 20 + 2 * elapsed + 1, (len(seen), elapsed)
    assert numbers[:20] == list(range(20)) and numbers == sorted(numbers), numbers
    if elapsed < 9:  # the 40 came within one window: refused, and told once
        assert [m.get("text") for m in widget.messages].count(RATE_LIMITED_TEXT) == 1
    other = await Widget().connect(rasa_stack.url)  # another conversation from the same IP is not affected
    try:
        assert (await other.say(await other.session(), "你好"))[-1].get("text")
    finally:
        await other.close()


async def test_connections_and_messages_are_limited_per_client_ip():
    """The channel alone on an in-process Sanic server, with tiny limits and a bot that echoes."""
    channel = SocketIOInput.from_credentials({"ip_limit": 3, "ip_window": 60})
    received: List[str] = []

    async def echo(message: UserMessage) -> None:
        received.append(message.text)
        await message.output_channel.send_text_message(message.sender_id, f"收到：{message.text}")

    app = Sanic(f"widget_limits_{uuid.uuid4().hex[:8]}")
    app.blueprint(channel.blueprint(echo))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
    await server.startup()
    try:
        first = await Widget().connect(f"http://127.0.0.1:{port}")  # 1 of the IP's 3: the connection
        session_id = await first.session()
        for text in ("一", "二", "三", "四"):  # requests 2 and 3 pass, 4 is refused and told, 5 silently
            await first.client.emit("user_uttered", {"message": text, "session_id": session_id})
        await first.wait(3, timeout=10)
        await asyncio.sleep(0.3)
        assert received == ["一", "二"]
        assert [m["text"] for m in first.messages] == ["收到：一", "收到：二", RATE_LIMITED_TEXT]
        with pytest.raises(socketio.exceptions.ConnectionError):  # a new connection from this IP is refused
            await Widget().connect(f"http://127.0.0.1:{port}")
        await first.close()
    finally:
        server.close()
        await server.wait_closed()
        for connection in list(server.connections):  # keep-alive connections of the polling clients
            connection.close_if_idle()
        await asyncio.sleep(0.1)
    with pytest.raises(ValueError, match="ip_window"):
        SocketIOInput.from_credentials({"ip_window": -1})
