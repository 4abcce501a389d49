"""REST channel: Rasa's ``rest`` connector with input validation, message clipping and rate limits.

``POST /webhooks/rest/webhook`` ``{"sender": "...", "message": "...", "metadata": {...}}`` → the bot's messages as
a JSON list (``?stream=true``: one JSON message per line, as in Rasa). Same name (``rest``), URL and output
channel as Rasa's connector, which it replaces in ``credentials.yml``::

    kefu.channels.rest.RestInput:
      sender_limit: 20     # messages per sender ...
      sender_window: 10    # ... per this many seconds (token bucket: bursts of `sender_limit`)
      ip_limit: 600        # requests per client IP ...
      ip_window: 10        # ... per this many seconds

What it enforces (Rasa's own connector answers 500 to e.g. a JSON list body):

- body at most 64 KB (413); UTF-8 JSON object; ``sender`` a printable string of 1-128 characters that is not
  another channel's conversation id (``tg:…``, ``wx:…``, ``web:…``); ``message`` a non-empty string;
  ``metadata`` absent or an object at most 10 levels deep — else 400 ``{"error": ...}``.
- the input channel is always ``rest`` (Rasa lets the body choose one, i.e. pose as another channel).
- messages over 1000 characters are cut (:func:`kefu.channels.common.clip_text`) and the reply starts with
  :data:`~kefu.channels.common.CLIPPED_NOTICE`; control characters other than line breaks and tabs are dropped.
- rate limits per client IP (every request) and per sender (every valid message): 429
  ``{"error": ..., "text": "您发送得太快了，请稍后再试。"}`` with ``Retry-After``.
- a failure inside the bot is logged (phone and ID numbers masked) and answered with a polite apology, never a
  500 or a traceback.
"""
from __future__ import annotations

import json
import logging
import re
from asyncio import CancelledError
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Text, Tuple

import rasa.utils.endpoints
from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from kefu.channels.common import (CLIPPED_NOTICE, DEFAULT_IP_LIMIT, DEFAULT_IP_WINDOW, DEFAULT_SENDER_LIMIT,
                                  DEFAULT_SENDER_WINDOW, RATE_LIMITED_TEXT, clip_text, client_ip)
from kefu.privacy import mask_text
from kefu.ratelimit import limiter_from_settings, take_both

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_SENDER_CHARS = 128
# the metadata is stored with the message and deep-copied by Rasa: a very deep one could break the conversation
MAX_METADATA_DEPTH = 10
# conversation ids of the other channels (kefu.channels.common.conversation_id): a REST client must not write
# into (or read the proven identity of) a Telegram, WeChat or web-widget conversation
RESERVED_SENDER_PREFIXES = ("tg:", "wx:", "web:")

APOLOGY = "抱歉，系统刚刚开了小差，请稍后再发一次消息。"
# C0 controls and DEL, except tab, line feed and carriage return
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def too_fast(what: str, retry_after: int) -> HTTPResponse:
    """429 for a client or sender over its rate limit, with a text a client can show the customer."""
    return response.json({"error": f"too many messages from this {what}; retry in {retry_after} s",
                          "text": RATE_LIMITED_TEXT}, status=429, headers={"Retry-After": str(max(1, retry_after))})


class RequestLimits:
    """The client-IP and sender limits of an HTTP channel (REST, callback), charged together: one Redis round trip
    per valid message when the limits are shared (kefu.ratelimit.take_both)."""

    def __init__(self, settings: Optional[Mapping[str, Any]], scope: str):
        self.scope = scope
        self.ip = limiter_from_settings(settings, "ip", DEFAULT_IP_LIMIT, DEFAULT_IP_WINDOW, scope=scope)
        self.sender = limiter_from_settings(settings, "sender", DEFAULT_SENDER_LIMIT, DEFAULT_SENDER_WINDOW,
                                            scope=scope)

    async def refusal(self, ip: str, sender: Optional[str]) -> Optional[HTTPResponse]:
        """The 429 for a request over a limit, else None. Every request counts for its client; a valid message
        (`sender` given) also for its sender."""
        if sender is None:
            ip_wait, sender_wait = await self.ip.take(ip), 0
        else:
            ip_wait, sender_wait = await take_both(self.ip, ip, self.sender, sender)
        if ip_wait:
            logger.warning("%s: rate limit of client %s reached", self.scope, ip)
            return too_fast("client", ip_wait)
        if sender_wait:
            logger.warning("%s: rate limit of sender %s reached", self.scope, sender)
            return too_fast("sender", sender_wait)
        return None


def _too_deep(value: Any, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


class BadRequest(ValueError):
    """The request body is not a valid REST message; the message is the English reason for the client."""


def parse_body(body: bytes) -> Tuple[str, str, Optional[Dict[str, Any]]]:
    """(sender, message text, metadata) of a REST request body, or BadRequest."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("body must be a UTF-8 JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    sender, text, metadata = data.get("sender"), data.get("message"), data.get("metadata")
    if not isinstance(sender, str) or not 0 < len(sender) <= MAX_SENDER_CHARS or not sender.isprintable() \
            or not sender.strip():
        raise BadRequest(f"'sender' must be a printable string of 1-{MAX_SENDER_CHARS} characters")
    if sender.lower().startswith(RESERVED_SENDER_PREFIXES):
        raise BadRequest("'sender' must not start with another channel's prefix "
                         f"({', '.join(RESERVED_SENDER_PREFIXES)})")
    if not isinstance(text, str):
        raise BadRequest("'message' must be a string")
    if _SURROGATE_RE.search(text):  # e.g. "\ud800" in JSON: not encodable, the tracker store would fail on it
        raise BadRequest("'message' must be valid Unicode text")
    text = _CONTROL_RE.sub("", text).strip()
    if not text:
        raise BadRequest("'message' must not be empty")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequest("'metadata' must be a JSON object")
    if metadata and _too_deep(metadata, MAX_METADATA_DEPTH):
        raise BadRequest(f"'metadata' is nested deeper than {MAX_METADATA_DEPTH} levels")
    return sender, text, metadata


class RestInput(RasaRestInput):
    """Rasa's REST channel, validated and rate-limited (see the module docstring)."""

    @classmethod
    def name(cls) -> Text:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(credentials)

    def __init__(self, settings: Optional[Mapping[str, Any]] = None) -> None:
        self.limits = RequestLimits(settings, "rest")

    async def _collect(self, on_new_message: Callable[[UserMessage], Awaitable[Any]], sender: str, text: str,
                       metadata: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
        collector = CollectingOutputChannel()
        try:
            await on_new_message(UserMessage(text, collector, sender, input_channel=self.name(), metadata=metadata))
        except CancelledError:
            logger.error("rest: the message of %s timed out", sender)
        except Exception:  # noqa: BLE001 - logged; the customer gets an apology, never a 500
            logger.exception("rest: the message of %s failed: %s", sender, mask_text(text))
            if not collector.messages:
                return [{"recipient_id": sender, "text": APOLOGY}]
        return collector.messages

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        webhook = Blueprint("kefu_rest_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body = request.body or b""
            sender, problem = None, None
            if len(body) > MAX_BODY_BYTES:
                problem = response.json({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status=413)
            else:
                try:
                    sender, text, metadata = parse_body(body)
                except BadRequest as error:
                    problem = response.json({"error": str(error)}, status=400)
            refusal = await self.limits.refusal(client_ip(request), sender)
            if refusal is not None or problem is not None:
                return refusal or problem
            text, clipped = clip_text(text)
            notice = [{"recipient_id": sender, "text": CLIPPED_NOTICE}] if clipped else []

            if rasa.utils.endpoints.bool_arg(request, "stream", default=False):
                async def stream(resp: Any) -> None:
                    for message in notice:
                        await resp.write(json.dumps(message) + "\n")  # ASCII, as Rasa's stream writes
                    await self.stream_response(on_new_message, text, sender, self.name(), metadata)(resp)

                return response.stream(stream, content_type="text/event-stream")
            return response.json(notice + await self._collect(on_new_message, sender, text, metadata))

        return webhook
