"""WeChat Official Account (微信公众号) input channel for Rasa, plain-text (non-encrypted) mode.

WeChat calls ``/webhooks/wechat/webhook``:

- ``GET`` with ``signature, timestamp, nonce, echostr`` once, when the server URL is configured:
  we echo ``echostr`` when ``signature == sha1("".join(sorted([token, timestamp, nonce])))``.
- ``POST`` with an XML message (same signature in the query string) for every user message / event.
  WeChat waits 5 seconds for the answer and retries up to 3 times. If the bot answers within
  ``reply_timeout`` we reply passively (an XML text message in the HTTP response), otherwise we
  answer ``success`` and deliver the reply later through the customer-service message API.

Buttons do not exist in WeChat text messages: they are rendered as a numbered list and a reply of
just the number sends that button's payload. ``get_output_channel()`` pushes through the
customer-service API, so the agent desk's messages during a human handoff reach the user.

Each user may send ``sender_limit`` messages per ``sender_window`` seconds (credentials; default 20 per 10 s);
a new message over the limit is not processed and is answered passively with ``RATE_LIMITED_TEXT`` (at most
once per window per user, else ``success``). WeChat's retries of a message already taken cost nothing.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Dict, Generic, List, Mapping, Optional, Tuple, TypeVar
from xml.parsers import expat

import aiohttp
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage

from kefu.channels.common import (CLIPPED_NOTICE, DEFAULT_SENDER_LIMIT, DEFAULT_SENDER_WINDOW, RATE_LIMITED_TEXT,
                                  clip_text, conversation_id)
from kefu.privacy import mask_text
from kefu.ratelimit import ALLOW, TELL, throttle_from_settings

logger = logging.getLogger(__name__)

CHANNEL = "wechat"
SENDER_PREFIX = "wx"
DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"
DEFAULT_REPLY_TIMEOUT = 4.5          # WeChat gives up (and retries) after 5 seconds
WECHAT_WAIT_LIMIT = 5.0
MAX_BODY_BYTES = 64 * 1024           # WeChat's own messages are a few KB at most
MAX_REPLY_BYTES = 2000               # WeChat's limit for one text message is 2048 bytes (UTF-8)
SUCCESS = "success"                  # "received, no passive reply": WeChat shows nothing and does not retry

UNSUPPORTED_NOTICE = "抱歉，目前仅支持文字消息，请用文字描述您的问题，我马上为您处理。"
ERROR_NOTICE = "抱歉，系统有点忙，请稍后再试，或回复“转人工”联系人工客服。"
BUTTONS_HEADER = "回复数字选择："
GREET_PAYLOAD = "/greet"

# access token errors after which a fresh token is fetched once: invalid / expired / invalid token
TOKEN_ERRCODES = {40001, 40014, 42001}
# openids are 28 characters of [A-Za-z0-9_-]; allow some headroom, nothing else
_OPENID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_\-@.]{1,64}$")


# ---------------------------------------------------------------------------------------------------------------
# signatures and XML


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    """The signature WeChat puts in the query string: sha1 of the sorted, concatenated token/timestamp/nonce."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode("utf-8")).hexdigest()


def signature_is_valid(token: str, signature: Optional[str], timestamp: Optional[str], nonce: Optional[str]) -> bool:
    if not (signature and timestamp and nonce):
        return False
    return hmac.compare_digest(wechat_signature(token, timestamp, nonce), signature.strip().lower())


class WeChatXMLError(ValueError):
    """The body is not a flat WeChat XML message (or tries DOCTYPE/entity tricks)."""


def parse_message(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> Dict[str, str]:
    """The fields of a WeChat XML message (``<xml><ToUserName>…</ToUserName>…</xml>``) as a dict.

    Parsed with expat directly so that any DOCTYPE, entity declaration or external entity is rejected
    before it can be expanded; only the first level below ``<xml>`` is kept.
    """
    if len(body) > max_bytes:
        raise WeChatXMLError("body too large")
    fields: Dict[str, str] = {}
    depth = 0
    current: Optional[str] = None
    parts: List[str] = []
    seen_root = False

    def reject(*_args: Any) -> None:
        raise WeChatXMLError("DOCTYPE and entities are not allowed")

    def start(name: str, _attrs: Any) -> None:
        nonlocal depth, current, seen_root
        depth += 1
        if depth == 1:
            if seen_root or name != "xml":
                raise WeChatXMLError("root element must be <xml>")
            seen_root = True
        elif depth == 2:
            current = name
            parts.clear()

    def end(name: str) -> None:
        nonlocal depth, current
        if depth == 2 and current is not None:
            fields[current] = "".join(parts).strip()
            current = None
        depth -= 1

    def chars(data: str) -> None:
        if depth == 2 and current is not None:
            parts.append(data)

    parser = expat.ParserCreate(encoding="utf-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = reject
    parser.EntityDeclHandler = reject
    parser.UnparsedEntityDeclHandler = reject
    parser.ExternalEntityRefHandler = reject
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(body, True)
    except WeChatXMLError:
        raise
    except (expat.ExpatError, ValueError, RecursionError) as error:
        raise WeChatXMLError(f"malformed XML: {error}") from error
    if not seen_root:
        raise WeChatXMLError("no <xml> element")
    return fields


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply_xml(to_user: str, from_user: str, content: str, create_time: Optional[int] = None) -> str:
    """A passive text reply (plain mode, no encryption)."""
    return (f"<xml><ToUserName>{_cdata(to_user)}</ToUserName><FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{int(create_time if create_time is not None else time.time())}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content>{_cdata(content)}</Content></xml>")


def split_for_wechat(text: str, max_bytes: int = MAX_REPLY_BYTES) -> List[str]:
    """`text` in pieces of at most `max_bytes` UTF-8 bytes, cut at paragraph / line ends where possible."""
    text = text.strip()
    if not text:
        return []
    chunks: List[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode("utf-8")) <= max_bytes:
            current = candidate
            continue
        if current:
            chunks.append(current)
        current = ""
        while len(line.encode("utf-8")) > max_bytes:  # one very long line: cut by characters
            cut = len(line)
            while len(line[:cut].encode("utf-8")) > max_bytes:
                cut = max(1, cut * max_bytes // len(line[:cut].encode("utf-8")) - 1)
            chunks.append(line[:cut])
            line = line[cut:]
        current = line
    if current.strip():
        chunks.append(current)
    return [chunk.strip("\n") for chunk in chunks if chunk.strip()]


# ---------------------------------------------------------------------------------------------------------------
# small in-process caches


K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A bounded map whose entries expire `ttl` seconds after they were set (oldest evicted first)."""

    def __init__(self, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.max_entries, self.ttl, self._clock = max_entries, ttl, clock
        self._data: "OrderedDict[K, Tuple[float, V]]" = OrderedDict()

    def _purge(self) -> None:
        now = self._clock()
        while self._data:
            key, (expires, _) = next(iter(self._data.items()))
            if expires > now and len(self._data) <= self.max_entries:
                break
            del self._data[key]

    def get(self, key: K) -> Optional[V]:
        self._purge()
        item = self._data.get(key)
        return item[1] if item else None

    def set(self, key: K, value: V) -> None:
        self._data.pop(key, None)
        self._data[key] = (self._clock() + self.ttl, value)
        self._purge()

    def pop(self, key: K) -> Optional[V]:
        item = self._data.pop(key, None)
        return item[1] if item else None

    def __len__(self) -> int:
        self._purge()
        return len(self._data)


class ButtonMemory:
    """The payloads of the buttons last shown to each user, so that a reply of "1" picks the first one."""

    def __init__(self, max_users: int = 10000, ttl: float = 30 * 60):
        self._cache: TTLCache[str, List[str]] = TTLCache(max_users, ttl)

    def remember(self, openid: str, payloads: List[str]) -> None:
        if payloads:
            self._cache.set(openid, list(payloads))
        else:
            self._cache.pop(openid)

    def resolve(self, openid: str, text: str) -> Optional[str]:
        """The payload chosen by `text` when it is just the number of a remembered button."""
        text = (text or "").strip().rstrip(".。、")
        if not text or len(text) > 3:
            return None
        try:
            number = int(text)  # also full-width digits
        except ValueError:
            return None
        payloads = self._cache.get(openid) or []
        return payloads[number - 1] if 1 <= number <= len(payloads) else None


def button_payload(button: Mapping[str, Any]) -> str:
    return str(button.get("payload") or button.get("title") or "")


def render_buttons(buttons: List[Mapping[str, Any]], first_number: int = 1) -> str:
    lines = [BUTTONS_HEADER]
    for number, button in enumerate(buttons, start=first_number):
        lines.append(f"{number}. {button.get('title') or button_payload(button)}")
    return "\n".join(lines)


def render_messages(messages: List[Dict[str, Any]]) -> Tuple[str, List[str]]:
    """Bot messages (as collected by ``CollectingOutputChannel``) as one WeChat text, and the payloads of
    its buttons in the order of their numbers. Messages are separated by blank lines."""
    paragraphs: List[str] = []
    payloads: List[str] = []
    for message in messages:
        parts: List[str] = []
        if message.get("text"):
            parts.append(str(message["text"]).strip())
        if message.get("image"):
            parts.append(f"图片：{message['image']}")
        if message.get("attachment"):
            attachment = message["attachment"]
            parts.append(f"附件：{attachment if isinstance(attachment, str) else json.dumps(attachment, ensure_ascii=False)}")
        custom = message.get("custom")
        if isinstance(custom, dict) and isinstance(custom.get("text"), str):
            parts.append(custom["text"].strip())
        buttons = [b for b in (message.get("buttons") or message.get("quick_replies") or []) if isinstance(b, dict)]
        if buttons:
            parts.append(render_buttons(buttons, first_number=len(payloads) + 1))
            payloads += [button_payload(b) for b in buttons]
        text = "\n".join(part for part in parts if part)
        if text:
            paragraphs.append(text)
    return "\n\n".join(paragraphs), payloads


def openid_of(recipient_id: str) -> Optional[str]:
    """``wx:<openid>`` -> ``<openid>``; None for other channels' senders."""
    prefix = f"{SENDER_PREFIX}:"
    if recipient_id and recipient_id.startswith(prefix) and _OPENID_RE.match(recipient_id[len(prefix):]):
        return recipient_id[len(prefix):]
    return None


# ---------------------------------------------------------------------------------------------------------------
# the WeChat API (access token + customer-service messages)


class WeChatApiError(Exception):
    def __init__(self, errcode: Any, errmsg: str):
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode, self.errmsg = errcode, errmsg


class WeChatApi:
    """Access token (cached until shortly before ``expires_in``) and customer-service text messages."""

    def __init__(self, app_id: str, app_secret: str, base_url: str = DEFAULT_API_BASE_URL, timeout: float = 10.0,
                 refresh_margin: float = 300.0):
        self.app_id, self.app_secret = app_id, app_secret
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.refresh_margin = refresh_margin
        self._token: Optional[str] = None
        self._expires_at = 0.0
        self._lock: Optional[asyncio.Lock] = None
        self._lock_loop: Optional[asyncio.AbstractEventLoop] = None

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _call(self, method: str, path: str, params: Dict[str, str], payload: Any = None) -> Dict[str, Any]:
        url = f"{self.base_url}{path}"
        data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session:
                async with session.request(method, url, params=params, data=data, headers=headers) as resp:
                    body = await resp.read()
                    if resp.status >= 300:
                        raise WeChatApiError(f"http {resp.status}", body[:200].decode("utf-8", "replace"))
        except WeChatApiError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise WeChatApiError("unreachable", repr(error)) from error
        try:
            result = json.loads(body.decode("utf-8"))
        except ValueError as error:
            raise WeChatApiError("bad json", body[:200].decode("utf-8", "replace")) from error
        if not isinstance(result, dict):
            raise WeChatApiError("bad json", "not an object")
        return result

    def invalidate(self, token: Optional[str] = None) -> None:
        if token is None or token == self._token:
            self._token, self._expires_at = None, 0.0

    async def access_token(self) -> str:
        async with self._get_lock():
            if self._token and time.monotonic() < self._expires_at:
                return self._token
            result = await self._call("GET", "/cgi-bin/token", {
                "grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret})
            token = result.get("access_token")
            if not token:
                raise WeChatApiError(result.get("errcode"), str(result.get("errmsg", "no access_token")))
            try:
                expires_in = float(result.get("expires_in", 7200))
            except (TypeError, ValueError):
                expires_in = 7200.0
            margin = min(self.refresh_margin, expires_in / 2)
            self._token, self._expires_at = str(token), time.monotonic() + expires_in - margin
            return self._token

    async def send_text(self, openid: str, content: str) -> None:
        """One customer-service text message; a rejected access token is refreshed once."""
        payload = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        for attempt in (1, 2):
            token = await self.access_token()
            result = await self._call("POST", "/cgi-bin/message/custom/send", {"access_token": token}, payload)
            errcode = result.get("errcode", 0)
            if errcode in (0, "0"):
                return
            if attempt == 1 and errcode in TOKEN_ERRCODES:
                logger.info("wechat: access token rejected (errcode %s), fetching a new one", errcode)
                self.invalidate(token)
                continue
            raise WeChatApiError(errcode, str(result.get("errmsg", "")))

    async def send_long_text(self, openid: str, text: str) -> None:
        for chunk in split_for_wechat(text):
            await self.send_text(openid, chunk)


class WeChatOutput(OutputChannel):
    """Sends bot messages to a WeChat user (recipient ``wx:<openid>``) through the customer-service API.

    Used when Rasa pushes outside a webhook call: ``output_channel=latest`` on the HTTP API (the agent
    desk during a handoff), reminders, and replies too slow for a passive answer. Failures are logged,
    not raised (e.g. errcode 45015: the user has not written for more than 48 hours).
    """

    def __init__(self, api: WeChatApi, buttons: Optional[ButtonMemory] = None):
        self.api = api
        self.buttons = buttons

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    async def _deliver(self, recipient_id: str, text: str, payloads: Optional[List[str]] = None) -> None:
        openid = openid_of(recipient_id)
        if openid is None:
            logger.warning("wechat: cannot push to %r, not a WeChat conversation", recipient_id)
            return
        if self.buttons is not None:
            self.buttons.remember(openid, payloads or [])
        try:
            await self.api.send_long_text(openid, text)
        except WeChatApiError as error:
            logger.error("wechat: push to %s failed: %s", recipient_id, error)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        if text and text.strip():
            await self._deliver(recipient_id, text.strip())

    async def send_text_with_buttons(self, recipient_id: str, text: str, buttons: List[Dict[str, Any]],
                                     **kwargs: Any) -> None:
        content, payloads = render_messages([{"text": text, "buttons": buttons}])
        if content:
            await self._deliver(recipient_id, content, payloads)

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self._deliver(recipient_id, f"图片：{image}")

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        await self._deliver(recipient_id, f"附件：{attachment}")

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        if isinstance(json_message, dict) and isinstance(json_message.get("text"), str):
            await self._deliver(recipient_id, json_message["text"])


# ---------------------------------------------------------------------------------------------------------------
# the input channel


class _Pending:
    """One WeChat message being answered; shared by WeChat's retries of that message."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.chunks: Optional[List[str]] = None   # the rendered reply, split for WeChat
        self.mode = "waiting"                      # -> "passive" (HTTP answer) or "push" (customer-service API)


WebResult = Tuple[int, str, str]  # status, body, content type
OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


class WeChatInput(InputChannel):
    """Rasa input channel for a WeChat Official Account (plain mode)."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "WeChatInput":
        if not credentials:
            cls.raise_missing_credentials_exception()
        missing = [key for key in ("token", "app_id", "app_secret") if not credentials.get(key)]
        if missing:
            raise ValueError(f"wechat channel: missing credentials {', '.join(missing)}")
        return cls(str(credentials["token"]), str(credentials["app_id"]), str(credentials["app_secret"]),
                   api_base_url=credentials.get("api_base_url") or DEFAULT_API_BASE_URL,
                   reply_timeout=float(credentials.get("reply_timeout") or DEFAULT_REPLY_TIMEOUT), limits=credentials)

    def __init__(self, token: str, app_id: str, app_secret: str, api_base_url: str = DEFAULT_API_BASE_URL,
                 reply_timeout: float = DEFAULT_REPLY_TIMEOUT, dedup_ttl: float = 120.0, max_pending: int = 10000,
                 limits: Optional[Mapping[str, Any]] = None):
        if reply_timeout <= 0:
            raise ValueError("wechat channel: reply_timeout must be positive")
        if reply_timeout >= WECHAT_WAIT_LIMIT:
            logger.warning("wechat: reply_timeout %.1fs is not below WeChat's 5s limit; WeChat will retry",
                           reply_timeout)
        self.token = token
        self.reply_timeout = reply_timeout
        self.api = WeChatApi(app_id, app_secret, api_base_url)
        self.buttons = ButtonMemory()
        self.throttle = throttle_from_settings(limits, "sender", DEFAULT_SENDER_LIMIT, DEFAULT_SENDER_WINDOW,
                                               scope="wechat")
        self._pending: TTLCache[str, _Pending] = TTLCache(max_pending, dedup_ttl)
        self._tasks: set = set()

    def get_output_channel(self) -> OutputChannel:
        return WeChatOutput(self.api, self.buttons)

    # -- helpers ----------------------------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _push(self, openid: str, chunks: List[str]) -> None:
        for chunk in chunks:
            try:
                await self.api.send_text(openid, chunk)
            except WeChatApiError as error:
                logger.error("wechat: customer-service message to wx:%s failed: %s", openid, error)
                return
            except Exception:  # never let a background task die silently
                logger.exception("wechat: customer-service message to wx:%s failed", openid)
                return

    async def _run_bot(self, on_new_message: OnNewMessage, openid: str, text: str,
                       metadata: Dict[str, Any]) -> List[Dict[str, Any]]:
        collector = CollectingOutputChannel()
        message = UserMessage(text, collector, conversation_id(SENDER_PREFIX, openid), input_channel=CHANNEL,
                              metadata=metadata)
        await on_new_message(message)
        return collector.messages

    async def _answer(self, on_new_message: OnNewMessage, fields: Dict[str, str]) -> str:
        """The whole reply text for one message or event (never raises)."""
        openid = fields["FromUserName"]
        msg_type = fields.get("MsgType", "").lower()
        metadata = {"wechat": {"msg_type": msg_type, "msg_id": fields.get("MsgId"),
                               "create_time": fields.get("CreateTime"), "account": fields.get("ToUserName")}}
        prefix: List[str] = []
        try:
            if msg_type == "event":
                text = GREET_PAYLOAD
            else:
                text = fields.get("Content", "")
                chosen = self.buttons.resolve(openid, text)
                if chosen is not None:
                    metadata["wechat"]["button"] = text.strip()
                    text = chosen
                else:
                    text, clipped = clip_text(text)
                    if clipped:
                        prefix.append(CLIPPED_NOTICE)
                        metadata["clipped"] = True
            logger.debug("wechat: message from wx:%s: %s", openid, mask_text(text))
            messages = await self._run_bot(on_new_message, openid, text, metadata)
            content, payloads = render_messages(messages)
            self.buttons.remember(openid, payloads)
        except Exception:
            logger.exception("wechat: the bot failed on a message from wx:%s", openid)
            content = ERROR_NOTICE
        return "\n\n".join(prefix + ([content] if content else []))

    async def _work(self, on_new_message: OnNewMessage, fields: Dict[str, str], pending: _Pending) -> None:
        content = await self._answer(on_new_message, fields)
        pending.chunks = split_for_wechat(content)
        pending.done.set()
        openid = fields["FromUserName"]
        if pending.mode == "push":
            self._spawn(self._push(openid, pending.chunks))
        elif pending.mode == "waiting":
            # a webhook call still waiting claims the passive answer; if none does (e.g. WeChat hung up), push
            asyncio.get_running_loop().call_later(self.reply_timeout + 1.0, self._push_if_unclaimed, openid, pending)

    def _push_if_unclaimed(self, openid: str, pending: _Pending) -> None:
        if pending.mode == "waiting":
            pending.mode = "push"
            self._spawn(self._push(openid, pending.chunks or []))

    def _passive(self, fields: Dict[str, str], content: str) -> WebResult:
        return 200, text_reply_xml(fields["FromUserName"], fields.get("ToUserName", ""), content), "application/xml"

    @staticmethod
    def _success() -> WebResult:
        return 200, SUCCESS, "text/plain"

    # -- request handling (framework independent, so it can be tested without Sanic) ---------------------------

    def verify_url(self, args: Mapping[str, Optional[str]], client: str = "?") -> WebResult:
        if not signature_is_valid(self.token, args.get("signature"), args.get("timestamp"), args.get("nonce")):
            logger.warning("wechat: URL verification with a wrong or missing signature from %s rejected", client)
            return 403, "invalid signature", "text/plain"
        return 200, args.get("echostr") or "", "text/plain"

    async def handle_post(self, args: Mapping[str, Optional[str]], body: bytes,
                          on_new_message: OnNewMessage, client: str = "?") -> WebResult:
        started = time.monotonic()
        if not signature_is_valid(self.token, args.get("signature"), args.get("timestamp"), args.get("nonce")):
            logger.warning("wechat: message with a wrong or missing signature from %s rejected", client)
            return 403, "invalid signature", "text/plain"
        if len(body) > MAX_BODY_BYTES:
            logger.warning("wechat: message of %d bytes from %s rejected", len(body), client)
            return 413, "body too large", "text/plain"
        if args.get("encrypt_type") not in (None, "", "raw"):
            logger.error("wechat: encrypted (safe mode) messages are not supported; use plain mode")
            return 400, "encrypted messages are not supported", "text/plain"
        try:
            fields = parse_message(body)
        except WeChatXMLError as error:
            logger.warning("wechat: unreadable message from %s: %s", client, error)
            return 400, "malformed message", "text/plain"
        openid, msg_type = fields.get("FromUserName", ""), fields.get("MsgType", "").lower()
        if not _OPENID_RE.match(openid) or not _ACCOUNT_RE.match(fields.get("ToUserName", "")) or not msg_type:
            logger.warning("wechat: message without valid FromUserName/ToUserName/MsgType from %s", client)
            return 400, "missing fields", "text/plain"

        if msg_type == "event":
            event = fields.get("Event", "").lower()
            if event != "subscribe":  # unsubscribe, menu clicks, location reports...: acknowledge only
                return self._success()
            key = f"event:{openid}:{fields.get('CreateTime', '')}:{event}"
        elif msg_type == "text":
            if "Content" not in fields:
                return 400, "missing fields", "text/plain"
            key = f"msg:{fields.get('MsgId') or openid + ':' + fields.get('CreateTime', '')}"
        else:  # image, voice, video, location, link, file...
            return self._passive(fields, UNSUPPORTED_NOTICE)

        pending = self._pending.get(key)
        if pending is None:
            pending = _Pending()
            self._pending.set(key, pending)  # before any await: a concurrent retry must find it
            verdict = await self.throttle.check(openid)
            if verdict == ALLOW:
                self._spawn(self._work(on_new_message, fields, pending))
            else:  # refused: this message (and WeChat's retries of it) gets the notice once per window, or nothing
                logger.warning("wechat: rate limit of wx:%s reached; message dropped", openid)
                pending.chunks = [RATE_LIMITED_TEXT] if verdict == TELL else []
                pending.done.set()
        elif pending.mode == "push":  # a retry after we already answered "success"
            return self._success()

        remaining = self.reply_timeout - (time.monotonic() - started)
        try:
            await asyncio.wait_for(asyncio.shield(pending.done.wait()), timeout=max(0.0, remaining))
        except asyncio.TimeoutError:
            if pending.mode == "waiting":
                logger.info("wechat: reply to wx:%s takes longer than %.1fs, will push it", openid, self.reply_timeout)
                pending.mode = "push"
                if pending.chunks is not None:
                    self._spawn(self._push(openid, pending.chunks))
            return self._success()
        if pending.mode == "push" or not pending.chunks:
            return self._success()
        pending.mode = "passive"
        if len(pending.chunks) > 1:  # longer than one WeChat message: the rest through the API
            self._spawn(self._push(openid, pending.chunks[1:]))
            pending.chunks = pending.chunks[:1]
        return self._passive(fields, pending.chunks[0])

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        webhook = Blueprint("wechat_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        def answer(result: WebResult) -> HTTPResponse:
            status, body, content_type = result
            return response.text(body, status=status, content_type=f"{content_type}; charset=utf-8")

        def args_of(request: Request) -> Dict[str, Optional[str]]:
            return {key: request.args.get(key) for key in request.args}

        @webhook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            return answer(self.verify_url(args_of(request), client=request.remote_addr or request.ip or "?"))

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            try:
                return answer(await self.handle_post(args_of(request), request.body or b"", on_new_message,
                                                     client=request.remote_addr or request.ip or "?"))
            except Exception:  # never a 5xx to WeChat: it would retry and finally warn the account owner
                logger.exception("wechat: unexpected error while handling a message")
                return answer(self._success())

        return webhook


def credentials_from_env(env: Mapping[str, str]) -> Optional[Dict[str, Any]]:
    """The ``kefu.channels.wechat.WeChatInput`` credentials.yml entry from WECHAT_* variables (None without
    WECHAT_TOKEN)."""
    token = (env.get("WECHAT_TOKEN") or "").strip()
    if not token:
        return None
    credentials: Dict[str, Any] = {"token": token, "app_id": (env.get("WECHAT_APP_ID") or "").strip(),
                                   "app_secret": (env.get("WECHAT_APP_SECRET") or "").strip()}
    if (env.get("WECHAT_API_BASE_URL") or "").strip():
        credentials["api_base_url"] = env["WECHAT_API_BASE_URL"].strip()
    return credentials
