"""Callback channel for asynchronous clients (a merchant's app or backend), on top of Rasa's callback connector.

``POST /webhooks/callback/webhook`` with ``{"sender": "...", "message": "..."}`` answers ``202`` at once; every bot
message — and every agent message during a handoff — is then POSTed as JSON to the configured ``url``
(Rasa's CollectingOutputChannel format: ``recipient_id``, ``text``, ``buttons``…, plus ``agent``/``agent_name``
for a human's message).

Credentials (``credentials.yml``, or env via :func:`credentials_from_env`)::

    kefu.channels.callback.CallbackInput:
      url: "https://merchant.example/kefu-callback"   # where replies go
      secret: "shared secret"                        # HMAC-SHA256 of the raw body, both directions

With a ``secret``, requests must carry ``X-Kefu-Signature: sha256=<hex hmac of the body>`` (else 403), and each
callback carries the same header computed by us, so the client can check it. Bodies are checked as the REST
channel's (:func:`kefu.channels.rest.parse_body`: 400 with ``{"error": ...}``; another channel's conversation id
such as ``tg:…`` is refused), and so are the rate limits (``sender_limit``/``sender_window``, 20 per 10 s, and
``ip_limit``/``ip_window``, 600 per 10 s; 429 with ``Retry-After``).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Set, Text

from rasa.core.channels.callback import CallbackInput as RasaCallbackInput
from rasa.core.channels.callback import CallbackOutput as RasaCallbackOutput
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.utils.endpoints import EndpointConfig
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from kefu.channels.common import CLIPPED_NOTICE, clip_text, client_ip
from kefu.channels.rest import BadRequest, RequestLimits, parse_body
from kefu.privacy import mask_text

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Kefu-Signature"
MAX_BODY_BYTES = 64 * 1024
LIMIT_SETTINGS = ("sender_limit", "sender_window", "ip_limit", "ip_window")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def credentials_from_env(env: Mapping[str, str]) -> Optional[dict]:
    """KEFU_CALLBACK_URL (and KEFU_CALLBACK_SECRET) turn the channel on."""
    if not env.get("KEFU_CALLBACK_URL"):
        return None
    return {"url": env["KEFU_CALLBACK_URL"], "secret": env.get("KEFU_CALLBACK_SECRET") or None}


class CallbackOutput(RasaCallbackOutput):
    """Posts each message to the client's URL, signed; agent messages keep their author."""

    def __init__(self, endpoint: EndpointConfig, secret: Optional[str]) -> None:
        super().__init__(endpoint)
        self.secret = secret

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        author = {key: message[key] for key in ("agent", "agent_name") if message.get(key)}
        if author:
            return await self._persist_message({"recipient_id": recipient_id, "text": message.get("text"),
                                                **author})
        await super().send_response(recipient_id, message)

    async def _persist_message(self, message: Dict[Text, Any]) -> None:
        self.messages.append(message)
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            await self.callback_endpoint.request("post", data=body, headers=headers)
        except Exception as error:  # noqa: BLE001 - an unreachable client must not break the conversation
            logger.error("callback to %s failed: %r", self.callback_endpoint.url, error)


class CallbackInput(RasaCallbackInput):
    """Validated, signed, and truly asynchronous: the webhook answers before the bot has."""

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = dict(credentials or {})
        secret = credentials.pop("secret", None)
        limits = {key: credentials.pop(key) for key in LIMIT_SETTINGS if key in credentials}
        channel = cls(EndpointConfig.from_dict(credentials), limits)
        channel.secret = secret
        return channel

    def __init__(self, endpoint: EndpointConfig, limits: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(endpoint)
        self.secret: Optional[str] = None
        self.limits = RequestLimits(limits, "callback")
        self._tasks: Set[asyncio.Task] = set()

    def get_output_channel(self) -> CallbackOutput:
        return CallbackOutput(self.callback_endpoint, self.secret)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("kefu_callback_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            ip, body = client_ip(request), request.body or b""
            sender, problem = None, None
            if len(body) > MAX_BODY_BYTES:
                problem = response.json({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status=413)
            elif self.secret and not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""),
                                                         sign(self.secret, body)):
                logger.warning("callback channel: request with a missing or wrong signature from %s", ip)
                problem = response.json({"error": "missing or wrong signature"}, status=403)
            else:
                try:
                    sender, text, metadata = parse_body(body)
                except BadRequest as error:
                    problem = response.json({"error": str(error)}, status=400)
            refusal = await self.limits.refusal(ip, sender)
            if refusal is not None or problem is not None:
                return refusal or problem
            task = asyncio.create_task(self._handle(on_new_message, sender, text, metadata))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return response.json({"status": "accepted"}, status=202)

        return webhook

    async def _handle(self, on_new_message: Callable[[UserMessage], Awaitable[Any]], sender: str, text: str,
                      metadata: Optional[dict]) -> None:
        output = self.get_output_channel()
        text, clipped = clip_text(text)
        try:
            if clipped:
                await output.send_text_message(sender, CLIPPED_NOTICE)
            await on_new_message(UserMessage(text, output, sender, input_channel=self.name(), metadata=metadata))
        except Exception:  # noqa: BLE001 - logged; the client gets no half answer
            logger.exception("callback channel: message of %s failed: %s", sender, mask_text(text))
