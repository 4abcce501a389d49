"""The web chat widget's channel: Rasa's socket.io connector, hardened.

Differences from ``rasa.core.channels.socketio.SocketIOInput`` (whose name, ``socketio``, and events it keeps,
so that ``output_channel=latest`` pushes agent replies to the open chat):

- the server offers only the long-polling transport: the websocket upgrade fails under Rasa's Sanic 21.12
  and leaves stock socket.io clients with no replies at all (see ``../shared/stack.md``);
- ``enter_room`` is awaited whatever python-socketio version is installed;
- conversation ids are ``web:<session id>``, and only well-formed session ids (32 hex digits) are accepted,
  so a browser can resume its conversation after a reload but cannot pick another channel's conversation;
- malformed events are ignored with a log line instead of raising; over-long messages are cut with a notice;
- rate limits per client IP (connections and messages; ``ip_limit``/``ip_window``, default 600 per 10 s) and per
  conversation (``sender_limit``/``sender_window``, default 20 per 10 s): a refused connection is refused at
  the socket.io handshake, a refused message is not processed and is answered, at most once per window, with
  ``RATE_LIMITED_TEXT``;
- bot messages carry ``agent``/``agent_name`` when a human agent wrote them, so the widget can say so.
"""
from __future__ import annotations

import inspect
import logging
import re
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOOutput
from rasa.core.channels.socketio import SocketIOInput as RasaSocketIOInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncRedisManager, AsyncServer

from kefu.channels.common import (CLIPPED_NOTICE, DEFAULT_IP_LIMIT, DEFAULT_IP_WINDOW, DEFAULT_SENDER_LIMIT,
                                  DEFAULT_SENDER_WINDOW, RATE_LIMITED_TEXT, KeyedTurns, clip_text, client_ip,
                                  conversation_id)
from kefu.privacy import mask_text
from kefu.ratelimit import ALLOW, TELL, throttle_from_settings

logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
# Keys of a bot message's metadata that the widget may show (who wrote it).
AGENT_KEYS = ("agent", "agent_name")


def room_of(session_id: str) -> str:
    """The Rasa conversation id (and socket.io room) of a widget session."""
    return conversation_id("web", session_id)


class WidgetOutput(SocketIOOutput):
    """socket.io output that keeps the author of agent messages."""

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        author = {key: message[key] for key in AGENT_KEYS if message.get(key)}
        if not author:
            return await super().send_response(recipient_id, message)
        # An agent's message: one bubble, labelled with the agent.
        await self._send_message(recipient_id, {"text": message.get("text") or "", **author})


class SocketIOInput(RasaSocketIOInput):
    """Rasa's socket.io channel for the web widget (polling transport, validated input).

    Credentials as Rasa's socket.io channel, plus ``cors_allowed_origins`` (default ``"*"``: any merchant page
    may embed the widget; list the shop's origins to restrict it) and ``redis_url``: with several Rasa processes,
    a message emitted by one process (an agent's reply arriving through the HTTP API) must reach a widget
    connected to another; python-socketio's Redis manager relays it.
    """

    cors_allowed_origins: Any = "*"
    redis_url: Optional[str] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_limits(None)  # the defaults; from_credentials sets the configured ones
        self._turns = KeyedTurns()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        channel = super().from_credentials(credentials)
        channel.cors_allowed_origins = (credentials or {}).get("cors_allowed_origins", "*")
        channel.redis_url = (credentials or {}).get("redis_url")
        channel.set_limits(credentials)
        return channel

    def set_limits(self, settings: Optional[Dict[Text, Any]]) -> None:
        """Rate limits from ``ip_limit``/``ip_window``/``sender_limit``/``sender_window`` (ValueError if bad)."""
        self.ip_throttle = throttle_from_settings(settings, "ip", DEFAULT_IP_LIMIT, DEFAULT_IP_WINDOW, scope="web")
        self.sender_throttle = throttle_from_settings(settings, "sender", DEFAULT_SENDER_LIMIT,
                                                      DEFAULT_SENDER_WINDOW, scope="web")

    def get_output_channel(self) -> Optional[OutputChannel]:
        if self.sio is None:
            return None
        return WidgetOutput(self.sio, self.bot_message_evt)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        manager = AsyncRedisManager(self.redis_url, channel="kefu-socketio") if self.redis_url else None
        sio = AsyncServer(async_mode="sanic", cors_allowed_origins=self.cors_allowed_origins, transports=["polling"],
                          client_manager=manager)
        webhook = SocketBlueprint(sio, self.socketio_path, "socketio_webhook", __name__)
        self.sio = sio

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @sio.on("connect", namespace=self.namespace)
        async def connect(sid: Text, environ: Any = None, auth: Any = None) -> Optional[bool]:
            request = environ.get("sanic.request") if isinstance(environ, dict) else None
            if not isinstance(request, Request):
                # python-socketio also calls this for a "connect" event that a client emits on an open connection
                logger.warning("socket.io: ignored a 'connect' event sent by client %s", sid)
                return None
            ip = client_ip(request)
            if await self.ip_throttle.limiter.take(ip):
                logger.warning("socket.io: rate limit of client %s reached; connection refused", ip)
                return False
            async with sio.session(sid, namespace=self.namespace) as session:
                session["ip"] = ip
            return True

        async def too_fast(sid: Text, what: str, key: str) -> bool:
            verdict = await (self.ip_throttle if what == "client" else self.sender_throttle).check(key)
            if verdict == ALLOW:
                return False
            logger.warning("socket.io: rate limit of %s %s reached", what, mask_text(key))
            if verdict == TELL:
                await sio.emit(self.bot_message_evt, {"text": RATE_LIMITED_TEXT}, room=sid, namespace=self.namespace)
            return True

        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: Text, data: Any = None) -> None:
            requested = data.get("session_id") if isinstance(data, dict) else None
            session_id = requested if isinstance(requested, str) and SESSION_ID.match(requested) else uuid.uuid4().hex
            await self._enter_room(sid, room_of(session_id))
            async with sio.session(sid, namespace=self.namespace) as session:
                session["room"] = room_of(session_id)
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)

        @sio.on(self.user_message_evt, namespace=self.namespace)
        async def handle_message(sid: Text, data: Any = None) -> None:
            async with sio.session(sid, namespace=self.namespace) as session:
                room, ip = session.get("room"), session.get("ip", "?")
            # the checks may wait for Redis (shared limits): in the connection's turn, so messages keep their order
            async with self._turns.turn(sid):
                if await too_fast(sid, "client", ip):
                    return
                if not isinstance(data, dict) or not isinstance(data.get("message"), str):
                    logger.warning("socket.io: ignored a malformed message event from %s", sid)
                    return
                if room is None:
                    # The client skipped session_request (as a stock client without persistence does).
                    logger.warning("socket.io: message from %s before session_request; ignored", sid)
                    await sio.emit("session_required", {}, room=sid, namespace=self.namespace)
                    return
                text, clipped = clip_text(data["message"].strip())
                if not text or await too_fast(sid, "conversation", room):
                    return
            output = WidgetOutput(sio, self.bot_message_evt)
            if clipped:
                await output.send_text_message(room, CLIPPED_NOTICE)
            metadata = data.get(self.metadata_key)
            logger.debug("socket.io message in %s: %s", room, mask_text(text))
            await on_new_message(UserMessage(text, output, room, input_channel=self.name(),
                                             metadata=metadata if isinstance(metadata, dict) else None))

        return webhook

    async def _enter_room(self, sid: str, room: str) -> None:
        # python-socketio < 5.10 returns None, newer versions a coroutine
        result = self.sio.enter_room(sid, room, namespace=self.namespace)
        if inspect.isawaitable(result):
            await result
