"""Telegram channel: a Rasa custom connector on python-telegram-bot (Bot API webhook mode).

Telegram posts every Update to ``POST /webhooks/telegram/webhook`` with the secret given to
``setWebhook`` in the ``X-Telegram-Bot-Api-Secret-Token`` header. The webhook checks the secret,
parses the Update, answers 200 at once and hands the message to Rasa in a background task
(one message at a time per chat, in arrival order). Replies go out through the Bot API
(``sendMessage``, ``sendPhoto``, inline keyboards for buttons).

The conversation (Rasa sender) id of a chat is ``tg:<chat_id>``; :meth:`TelegramInput.get_output_channel`
derives the chat from it, so bot events appended through Rasa's HTTP API with
``output_channel=latest`` (the agent desk during a handoff) reach the chat too.

credentials.yml::

    kefu.channels.telegram.TelegramInput:
      access_token: "123456:ABC..."        # the bot token from @BotFather
      webhook_secret: "long-random-string" # 1-256 chars of A-Z a-z 0-9 _ -
      base_url: "https://api.telegram.org/bot"           # optional (python-telegram-bot's base_url)
      webhook_url: "https://kefu.example.com/webhooks/telegram/webhook"  # optional: setWebhook at startup
      sender_limit: 20                     # optional: messages and button presses per chat ...
      sender_window: 10                    # ... per this many seconds; more are dropped, with one notice per window
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import warnings
from collections import OrderedDict
from datetime import timedelta
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Set

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.shared.exceptions import RasaException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from kefu.channels.common import (CLIPPED_NOTICE, DEFAULT_SENDER_LIMIT, DEFAULT_SENDER_WINDOW, RATE_LIMITED_TEXT,
                                  KeyedTurns, clip_text, conversation_id)
from kefu.privacy import mask_text
from kefu.ratelimit import ALLOW, TELL, throttle_from_settings

logger = logging.getLogger(__name__)

CHANNEL = "telegram"
SENDER_PREFIX = "tg"
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# setWebhook accepts 1-256 characters of these for secret_token.
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

# Bot API limits
TEXT_LIMIT = 4096  # characters (UTF-16 code units) of one message
CALLBACK_DATA_LIMIT = 64  # bytes of an inline button's callback_data

# Customer-facing texts
NON_TEXT_REPLY = "抱歉，目前我只能处理文字消息，请用文字描述您的问题。"
APOLOGY = "抱歉，系统刚刚开了小差，请稍后再发一次消息。"
EXPIRED_BUTTON_REPLY = "抱歉，这个按钮已失效，请直接输入您的问题。"
BUTTONS_PROMPT = "请选择："

# A message to Rasa that takes longer than this is given up (and apologised for), so a hung
# action never blocks the chat's later messages.
MESSAGE_TIMEOUT = 120.0
UPDATE_ID_MEMORY = 2048
CALLBACK_PAYLOAD_MEMORY = 20000
# Only these Bot API methods may be called through a custom json message.
_CUSTOM_METHOD_RE = re.compile(r"^send[A-Z][A-Za-z]*$")
_START_RE = re.compile(r"^/start(?:@\w+)?(?:\s+(?P<payload>.*))?$", re.DOTALL)
_COMMAND_RE = re.compile(r"^/+(?P<command>[A-Za-z0-9_]+)(?:@\w+)?")
# Content a customer can send that is not text: each gets the "text only" reply.
_CONTENT_ATTRIBUTES = ("sticker", "photo", "voice", "audio", "video", "video_note", "document", "animation",
                       "location", "venue", "contact", "poll", "dice", "story", "game", "paid_media")


def credentials_from_env(env: Mapping[str, str]) -> Optional[dict]:
    """The channel's credentials from TELEGRAM_TOKEN, TELEGRAM_WEBHOOK_SECRET, TELEGRAM_API_BASE_URL
    (and optional TELEGRAM_WEBHOOK_URL); None when TELEGRAM_TOKEN is unset, i.e. the channel is off."""
    token = (env.get("TELEGRAM_TOKEN") or "").strip()
    if not token:
        return None
    credentials: Dict[str, Any] = {
        "access_token": token,
        "webhook_secret": (env.get("TELEGRAM_WEBHOOK_SECRET") or "").strip() or None,
    }
    base_url = (env.get("TELEGRAM_API_BASE_URL") or "").strip()
    if base_url:
        credentials["base_url"] = base_url
    webhook_url = (env.get("TELEGRAM_WEBHOOK_URL") or "").strip()
    if webhook_url:
        credentials["webhook_url"] = webhook_url
    return credentials


def _utf16_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _fitting_prefix(text: str, limit: int) -> int:
    """How many characters of `text` fit into `limit` UTF-16 code units (Telegram's measure)."""
    units = 0
    for index, char in enumerate(text):
        units += _utf16_units(char)
        if units > limit:
            return index
    return len(text)


_SENTENCE_ENDS = ("。", "！", "？", "；", "…", "!", "?", ";", ". ", " ")


def split_message(text: Optional[str], limit: int = TEXT_LIMIT) -> List[str]:
    """`text` as messages of at most `limit` UTF-16 code units, cut at a line break where possible,
    else after a sentence end, else hard; empty parts are dropped."""
    text = (text or "").strip()
    parts: List[str] = []
    while _fitting_prefix(text, limit) < len(text):
        cut = max(_fitting_prefix(text, limit), 1)
        window = text[:cut]
        at = window.rfind("\n")
        if at > 0 and at >= cut // 2:
            head, rest = text[:at], text[at + 1:]
        else:
            at = max(window.rfind(mark) + len(mark) for mark in _SENTENCE_ENDS)
            if at - 1 >= cut // 2:
                head, rest = text[:at], text[at:]
            else:
                head, rest = window, text[cut:]
        if head.strip():
            parts.append(head.rstrip())
        text = rest.lstrip("\n")
    if text.strip():
        parts.append(text)
    return parts


class CallbackPayloads:
    """Button payloads as Telegram callback_data (at most 64 bytes).

    Short payloads are sent as they are; longer ones under a short key derived from their hash,
    kept in a bounded in-process map (least recently used keys are forgotten first)."""

    PREFIX = "k:"

    def __init__(self, capacity: int = CALLBACK_PAYLOAD_MEMORY):
        self.capacity = capacity
        self._payloads: "OrderedDict[str, str]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._payloads)

    def callback_data(self, payload: str) -> str:
        if len(payload.encode("utf-8")) <= CALLBACK_DATA_LIMIT and not payload.startswith(self.PREFIX):
            return payload
        digest = hashlib.sha256(payload.encode("utf-8")).digest()[:15]
        key = self.PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")
        self._payloads[key] = payload
        self._payloads.move_to_end(key)
        while len(self._payloads) > self.capacity:
            self._payloads.popitem(last=False)
        return key

    def resolve(self, data: str) -> Optional[str]:
        """The payload of a button's callback_data; None for a key this process does not know."""
        if not data.startswith(self.PREFIX):
            return data
        payload = self._payloads.get(data)
        if payload is not None:
            self._payloads.move_to_end(data)
        return payload


def parse_chat_id(recipient_id: str) -> int:
    """The Telegram chat id of a conversation id ``tg:<chat_id>`` (a bare chat id is accepted too)."""
    value = str(recipient_id)
    prefix = SENDER_PREFIX + ":"
    if value.startswith(prefix):
        value = value[len(prefix):]
    if not re.fullmatch(r"-?\d{1,20}", value):
        raise ValueError(f"{recipient_id!r} is not a Telegram conversation id")
    return int(value)


def _seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


_FAILED = object()


class TelegramOutput(OutputChannel):
    """Sends Rasa's responses to a Telegram chat through the Bot API.

    Failures of the Bot API are logged, never raised: a chat that blocked the bot or a flaky
    network must not break the conversation's turn (its tracker is still saved)."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    def __init__(self, channel: "TelegramInput"):
        self.channel = channel

    async def _call(self, what: str, call: Callable[[Bot], Awaitable[Any]]) -> Any:
        """Run one Bot API call; its result, or ``_FAILED`` (logged) when it failed.
        Flood limits (short waits) and connection errors are retried once; timeouts are not,
        since the message may have been delivered."""
        for attempt in (1, 2):
            try:
                bot = await self.channel.bot()
                return await call(bot)
            except RetryAfter as error:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    delay = _seconds(error.retry_after)
                if attempt == 1 and delay <= 5:
                    await asyncio.sleep(delay)
                    continue
                logger.warning("telegram: %s hit the flood limit (retry after %ss)", what, delay)
            except BadRequest as error:
                logger.warning("telegram: %s refused: %s", what, self.channel.redact(str(error)))
            except TimedOut as error:
                logger.warning("telegram: %s timed out: %s", what, self.channel.redact(str(error)))
            except NetworkError as error:
                if attempt == 1:
                    continue
                logger.warning("telegram: %s failed: %s", what, self.channel.redact(str(error)))
            except Forbidden as error:
                logger.info("telegram: %s forbidden (bot blocked or removed?): %s", what,
                            self.channel.redact(str(error)))
            except TelegramError as error:
                logger.warning("telegram: %s failed: %s: %s", what, type(error).__name__,
                               self.channel.redact(str(error)))
            except Exception as error:  # never let a send break the conversation
                logger.error("telegram: %s failed unexpectedly: %s: %s", what, type(error).__name__,
                             self.channel.redact(str(error)))
            return _FAILED
        return _FAILED  # pragma: no cover - the loop always returns

    def _chat(self, recipient_id: str) -> Optional[int]:
        try:
            return parse_chat_id(recipient_id)
        except ValueError:
            logger.error("telegram: cannot send to %r: not a tg:<chat_id> conversation", recipient_id)
            return None

    async def _send_text(self, chat_id: int, text: Optional[str],
                         reply_markup: Optional[InlineKeyboardMarkup] = None) -> None:
        parts = split_message(text)
        if not parts and reply_markup is not None:
            parts = [BUTTONS_PROMPT]
        for index, part in enumerate(parts):
            markup = reply_markup if index == len(parts) - 1 else None
            await self._call(f"sendMessage to {chat_id}",
                             lambda bot, part=part, markup=markup: bot.send_message(chat_id, part, reply_markup=markup))

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        chat_id = self._chat(recipient_id)
        if chat_id is not None:
            await self._send_text(chat_id, text)

    def keyboard(self, buttons: List[Any]) -> Optional[InlineKeyboardMarkup]:
        """Rasa buttons as an inline keyboard, one button per row (a nested list makes one row)."""
        rows: List[List[InlineKeyboardButton]] = []
        for item in buttons or []:
            row = [self._button(button) for button in (item if isinstance(item, list) else [item])]
            row = [button for button in row if button is not None]
            if row:
                rows.append(row)
        return InlineKeyboardMarkup(rows) if rows else None

    def _button(self, button: Any) -> Optional[InlineKeyboardButton]:
        if not isinstance(button, dict):
            return None
        title = str(button.get("title") or "").strip()
        if not title:
            return None
        url = button.get("url")
        if url and button.get("type") in (None, "web_url"):
            return InlineKeyboardButton(title, url=str(url))
        payload = str(button.get("payload") or title)
        return InlineKeyboardButton(title, callback_data=self.channel.payloads.callback_data(payload))

    async def send_text_with_buttons(self, recipient_id: str, text: str, buttons: List[Dict[str, Any]],
                                     **kwargs: Any) -> None:
        chat_id = self._chat(recipient_id)
        if chat_id is not None:
            await self._send_text(chat_id, text, self.keyboard(buttons))

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        chat_id = self._chat(recipient_id)
        if chat_id is None:
            return
        sent = await self._call(f"sendPhoto to {chat_id}", lambda bot: bot.send_photo(chat_id, image))
        if sent is _FAILED:  # e.g. Telegram could not fetch the URL: the link still helps
            await self._send_text(chat_id, str(image))

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        chat_id = self._chat(recipient_id)
        if chat_id is None:
            return
        if isinstance(attachment, str) and attachment.startswith(("http://", "https://")):
            await self._call(f"sendDocument to {chat_id}", lambda bot: bot.send_document(chat_id, attachment))
        else:
            logger.info("telegram: attachment for %s ignored (only URLs are supported)", chat_id)

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        """Pass a Bot API call through: ``{"method": "sendLocation", "latitude": .., "longitude": ..}``
        or ``{"telegram": {"method": ..., "params": {...}}}``. Only ``send*`` methods, always to this chat."""
        chat_id = self._chat(recipient_id)
        if chat_id is None:
            return
        spec = json_message.get("telegram") if isinstance(json_message.get("telegram"), dict) else json_message
        method = spec.get("method") if isinstance(spec, dict) else None
        if not isinstance(method, str) or not _CUSTOM_METHOD_RE.match(method):
            logger.info("telegram: custom json for %s ignored: no Bot API send method in it", chat_id)
            return
        params = spec.get("params") if isinstance(spec.get("params"), dict) else {
            key: value for key, value in spec.items() if key != "method"}
        params = {**params, "chat_id": chat_id}

        async def call(bot: Bot) -> Any:
            with warnings.catch_warnings():  # PTB suggests its own method for known endpoints
                warnings.simplefilter("ignore")
                return await bot.do_api_request(method, api_kwargs=params)

        await self._call(f"{method} to {chat_id}", call)

    async def send_typing(self, recipient_id: str) -> None:
        chat_id = self._chat(recipient_id)
        if chat_id is not None:
            await self._call(f"sendChatAction to {chat_id}", lambda bot: bot.send_chat_action(chat_id, "typing"))

    async def answer_callback(self, callback_query_id: str) -> None:
        await self._call("answerCallbackQuery", lambda bot: bot.answer_callback_query(callback_query_id))


def _metadata(update: Update, message: Optional[Message], user: Any, chat_id: int, **extra: Any) -> Dict[str, Any]:
    """What the tracker keeps about the Telegram side of a message: ids only, no names."""
    chat = message.chat if message is not None and getattr(message, "chat", None) is not None else None
    chat_type = getattr(chat, "type", None)
    info = {
        "update_id": update.update_id,
        "chat_id": chat_id,
        "chat_type": str(getattr(chat_type, "value", chat_type)) if chat_type is not None else None,
        "message_id": getattr(message, "message_id", None),
        "user_id": getattr(user, "id", None),
        "language_code": getattr(user, "language_code", None),
        **extra,
    }
    return {CHANNEL: {key: value for key, value in info.items() if value is not None}}


def _find_button(message: Any, data: str) -> Optional[InlineKeyboardButton]:
    markup = getattr(message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", None) or ():
        for button in row:
            if button.callback_data == data:
                return button
    return None


def _has_keyboard(message: Any) -> bool:
    return bool(getattr(getattr(message, "reply_markup", None), "inline_keyboard", None))


class TelegramInput(InputChannel):
    """Telegram webhook channel (see the module docstring)."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "TelegramInput":
        if not credentials:
            cls.raise_missing_credentials_exception()
        return cls(credentials.get("access_token"), credentials.get("webhook_secret"),
                   base_url=credentials.get("base_url") or DEFAULT_BASE_URL,
                   webhook_url=credentials.get("webhook_url"), limits=credentials)

    def __init__(self, access_token: Optional[str], webhook_secret: Optional[str],
                 base_url: str = DEFAULT_BASE_URL, webhook_url: Optional[str] = None,
                 limits: Optional[Mapping[str, Any]] = None):
        if not access_token:
            raise RasaException("telegram channel: 'access_token' (the bot token) is required")
        if not webhook_secret or not _SECRET_RE.match(str(webhook_secret)):
            raise RasaException("telegram channel: 'webhook_secret' is required: 1-256 characters "
                                "of A-Z, a-z, 0-9, _ and -")
        self.access_token = str(access_token)
        self.webhook_secret = str(webhook_secret)
        self.base_url = str(base_url)
        self.webhook_url = webhook_url
        self.payloads = CallbackPayloads()
        self.throttle = throttle_from_settings(limits, "sender", DEFAULT_SENDER_LIMIT, DEFAULT_SENDER_WINDOW,
                                               scope="telegram")
        self._bot: Optional[Bot] = None
        self._bot_loop: Optional[asyncio.AbstractEventLoop] = None
        self._init_lock: Optional[asyncio.Lock] = None
        self._init_lock_loop: Optional[asyncio.AbstractEventLoop] = None
        self._seen_updates: "OrderedDict[int, None]" = OrderedDict()
        self._chat_turns = KeyedTurns()
        self._tasks: Set[asyncio.Task] = set()

    def redact(self, text: str) -> str:
        """`text` without the bot token (PTB and httpx messages may contain it)."""
        return text.replace(self.access_token, "<token>")

    async def bot(self) -> Bot:
        """The Bot of the running event loop, created and initialised (getMe) on first use."""
        loop = asyncio.get_running_loop()
        if self._bot is not None and self._bot_loop is loop:
            return self._bot
        if self._init_lock is None or self._init_lock_loop is not loop:
            self._init_lock, self._init_lock_loop = asyncio.Lock(), loop
        async with self._init_lock:
            if self._bot is not None and self._bot_loop is loop:
                return self._bot
            # httpx logs every request URL, which contains the token, at INFO
            httpx_logger = logging.getLogger("httpx")
            if httpx_logger.getEffectiveLevel() < logging.WARNING:
                httpx_logger.setLevel(logging.WARNING)
            request = HTTPXRequest(connection_pool_size=32, connect_timeout=5.0, read_timeout=15.0,
                                   write_timeout=15.0, pool_timeout=5.0)
            bot = Bot(self.access_token, base_url=self.base_url, request=request)
            try:
                await bot.initialize()
            except BaseException:
                with contextlib.suppress(Exception):
                    await bot.shutdown()
                raise
            self._bot, self._bot_loop = bot, loop
            return bot

    async def close(self) -> None:
        if self._bot is not None and self._bot_loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await self._bot.shutdown()
        self._bot = self._bot_loop = None

    def get_output_channel(self) -> TelegramOutput:
        return TelegramOutput(self)

    # --- webhook ---------------------------------------------------------------------------

    def secret_ok(self, given: Optional[str]) -> bool:
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.webhook_secret.encode("utf-8"))

    @staticmethod
    def parse_update(body: bytes) -> Optional[Update]:
        """The Update in a webhook body; None when it is not JSON or not an Update."""
        try:
            data = json.loads(body or b"")
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
            return None
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            return None
        try:
            return Update.de_json(data, None)
        except Exception:
            return None

    def _first_time(self, update_id: int) -> bool:
        """False for an update delivered before (Telegram redelivers when unsure)."""
        if update_id in self._seen_updates:
            return False
        self._seen_updates[update_id] = None
        while len(self._seen_updates) > UPDATE_ID_MEMORY:
            self._seen_updates.popitem(last=False)
        return True

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("kefu_telegram_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            try:
                given = request.headers.get(SECRET_HEADER)
                if not self.secret_ok(given):
                    logger.warning("telegram webhook: rejected a request with a %s secret token from %s",
                                   "missing" if not given else "wrong", request.ip)
                    return response.json({"ok": False, "error": "forbidden"}, status=403)
                update = self.parse_update(request.body)
                if update is None:
                    logger.warning("telegram webhook: rejected a body that is not a Telegram Update")
                    return response.json({"ok": False, "error": "not a Telegram Update"}, status=400)
                if self._first_time(update.update_id):
                    self._spawn(self.handle_update(update, on_new_message))
                else:
                    logger.info("telegram webhook: update %s was delivered again; ignored", update.update_id)
                return response.json({"ok": True})
            except Exception:  # never a 5xx: Telegram would only retry the same update
                logger.exception("telegram webhook: unexpected error")
                return response.json({"ok": True})

        @webhook.listener("after_server_start")
        async def set_webhook(app: Any, loop: Any) -> None:
            if self.webhook_url:
                await self.set_webhook()

        @webhook.listener("before_server_stop")
        async def stop(app: Any, loop: Any) -> None:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)
            await self.close()

        return webhook

    async def set_webhook(self) -> bool:
        """Point Telegram at `webhook_url` with our secret; False (logged) when that failed."""
        try:
            bot = await self.bot()
            await bot.set_webhook(self.webhook_url, secret_token=self.webhook_secret,
                                  allowed_updates=["message", "callback_query"])
            logger.info("telegram: webhook set to %s", self.webhook_url)
            return True
        except Exception as error:
            logger.error("telegram: setWebhook failed: %s: %s", type(error).__name__, self.redact(str(error)))
            return False

    # --- updates ---------------------------------------------------------------------------

    async def handle_update(self, update: Update, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """Hand one Update to Rasa; every failure is logged and, where possible, apologised for."""
        query, message = update.callback_query, update.message
        if query is not None:
            chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        elif message is not None:
            chat_id = message.chat.id
        else:
            logger.debug("telegram: update %s is neither a message nor a button press; ignored", update.update_id)
            return
        sender = conversation_id(SENDER_PREFIX, str(chat_id))
        out = self.get_output_channel()
        async with self._chat_turns.turn(chat_id):  # one message per chat at a time, in arrival order
            verdict = await self.throttle.check(chat_id)  # in the turn: a shared (Redis) check keeps the order
            if verdict != ALLOW:
                logger.warning("telegram: rate limit of %s reached; update %s dropped", sender, update.update_id)
                if query is not None:
                    await out.answer_callback(query.id)
                if verdict == TELL:
                    await out.send_text_message(sender, RATE_LIMITED_TEXT)
                return
            try:
                if query is not None:
                    await out.answer_callback(query.id)
                    text = self._button_text(query)
                    if text is None:
                        await out.send_text_message(sender, EXPIRED_BUTTON_REPLY)
                        return
                    metadata = _metadata(update, query.message, query.from_user, chat_id, button=True)
                else:
                    text = self._message_text(message)
                    if text is None:
                        if any(getattr(message, attribute, None) for attribute in _CONTENT_ATTRIBUTES):
                            await out.send_text_message(sender, NON_TEXT_REPLY)
                        return
                    text, clipped = clip_text(text)
                    if clipped:
                        await out.send_text_message(sender, CLIPPED_NOTICE)
                    metadata = _metadata(update, message, message.from_user, chat_id)
                logger.debug("telegram: message from %s: %s", sender, mask_text(text[:200]))
                await out.send_typing(sender)
                await asyncio.wait_for(
                    on_new_message(UserMessage(text, out, sender, input_channel=self.name(), metadata=metadata)),
                    timeout=MESSAGE_TIMEOUT)
            except Exception as error:
                logger.error("telegram: could not handle update %s of %s: %s: %s", update.update_id, sender,
                             type(error).__name__, mask_text(self.redact(str(error))[:300]),
                             exc_info=not isinstance(error, TelegramError))
                await out.send_text_message(sender, APOLOGY)

    @staticmethod
    def _message_text(message: Message) -> Optional[str]:
        """The text Rasa gets for a text message: ``/start`` greets; other typed commands lose the
        slash, so a customer cannot type an intent (``/inform{...}``) past NLU. None: not text."""
        if message.text is None:
            return None
        text = message.text.strip()
        if not text:
            return None
        if _START_RE.match(text):
            return "/greet"
        if text.startswith("/"):
            command = _COMMAND_RE.match(text)
            text = (command.group("command") + text[command.end():]) if command else text.lstrip("/")
            text = text.strip()
        return text or None

    def _button_text(self, query: Any) -> Optional[str]:
        """The user message of a button press: its payload, or the button's title when this
        process no longer knows the payload's key; None when neither can be found."""
        data = query.data or ""
        button = _find_button(query.message, data)
        if button is None and _has_keyboard(query.message):
            logger.warning("telegram: button data not on the pressed message's keyboard; ignored")
            return None
        payload = self.payloads.resolve(data) if data else None
        if payload:
            return payload
        return button.text if button is not None else None
