"""A local fake of the Telegram Bot API for the Telegram channel tests — no internet.

:class:`FakeTelegramAPI` is an aiohttp server on 127.0.0.1 (a free port) in a background thread with
its own event loop. It speaks the Bot API as python-telegram-bot uses it: ``POST /bot<token>/<method>``
with a JSON, urlencoded or multipart body, answering ``{"ok": true, "result": ...}`` with realistic
result objects, or ``{"ok": false, "error_code": ..., "description": ...}`` like Telegram does
(401 for a wrong token, 404 for an unknown method, 400 for a message that breaks a Bot API limit,
403 for a chat that blocked the bot). Every call is recorded thread-safely; :meth:`wait_for` waits
until the calls a test expects arrived, since the channel answers asynchronously.
"""
from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from aiohttp import web

from fakes.threaded_app import ThreadedApp

TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
# Parameters Telegram reads as JSON when they come in a form body.
_JSON_PARAMS = {"reply_markup", "entities", "caption_entities", "allowed_updates", "media", "reply_parameters",
                "link_preview_options", "options", "prices", "commands", "scope", "results"}
_INT_PARAMS = {"chat_id", "message_id", "from_chat_id", "reply_to_message_id", "message_thread_id", "offset",
               "limit", "timeout", "max_connections", "cache_time", "user_id", "duration", "width", "height"}
_BOOL_PARAMS = {"show_alert", "drop_pending_updates", "disable_notification", "protect_content",
                "disable_web_page_preview", "is_anonymous", "allow_sending_without_reply"}


@dataclass
class TelegramCall:
    """One Bot API request the fake received, its (decoded) parameters and how it was answered."""

    method: str
    params: Dict[str, Any]
    token: str
    status: int = 200
    answer: Dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return bool(self.answer.get("ok"))

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


class BotApiError(Exception):
    def __init__(self, code: int, description: str, parameters: Optional[dict] = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def _coerce(name: str, value: Any) -> Any:
    """A form value as Telegram understands it (JSON objects, integers, booleans)."""
    if not isinstance(value, str):
        return value
    if name in _JSON_PARAMS or value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name in _INT_PARAMS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if name in _BOOL_PARAMS and value in ("true", "false"):
        return value == "true"
    return value


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTelegramAPI:
    """``api.telegram.org`` for one bot: ``base_url`` is what python-telegram-bot takes as ``base_url``."""

    def __init__(self, token: Optional[str] = None, webhook_secret: Optional[str] = None,
                 bot_username: str = "kefu_test_bot"):
        self.bot_id = 7000000000 + secrets.randbelow(10**8)
        self.token = token or f"{self.bot_id}:{secrets.token_urlsafe(26)}"
        # The secret_token Telegram sends on each webhook request (what setWebhook was given).
        self.webhook_secret = webhook_secret or secrets.token_urlsafe(24)
        self.bot_username = bot_username
        self.webhook: Dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        self.unreachable_chats: Set[int] = set()   # chats that blocked the bot (403)
        self.port: Optional[int] = None
        self._cond = threading.Condition()
        self._calls: List[TelegramCall] = []
        self._failures: List[Tuple[str, int, str, Optional[dict]]] = []
        self._message_ids = itertools.count(1000)
        self._server: Optional[ThreadedApp] = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    def start(self) -> "FakeTelegramAPI":
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._server = ThreadedApp(app, "fake-telegram-api").start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> "FakeTelegramAPI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- test helpers ----------------------------------------------------------------------

    # Where the stack's channel registers its webhook at startup (recorded only; nothing calls it).
    WEBHOOK_URL = "https://kefu.example.com/webhooks/telegram/webhook"

    def channel_credentials(self) -> Dict[str, Any]:
        """credentials.yml settings of ``kefu.channels.telegram.TelegramInput`` talking to this fake."""
        return {"access_token": self.token, "webhook_secret": self.webhook_secret, "base_url": self.base_url,
                "webhook_url": self.WEBHOOK_URL}

    def calls(self, method: Optional[str] = None, *, ok: Optional[bool] = None,
              where: Optional[Callable[[TelegramCall], bool]] = None, **params: Any) -> List[TelegramCall]:
        """The recorded calls, oldest first, of `method` whose parameters equal `params`."""
        with self._cond:
            calls = list(self._calls)
        return [c for c in calls
                if (method is None or c.method == method) and (ok is None or c.ok == ok)
                and all(c.params.get(key) == value for key, value in params.items())
                and (where is None or where(c))]

    def wait_for(self, method: str, count: int = 1, timeout: float = 30.0, *, ok: Optional[bool] = True,
                 where: Optional[Callable[[TelegramCall], bool]] = None, **params: Any) -> List[TelegramCall]:
        """Wait until at least `count` matching calls arrived; all of them (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.calls(method, ok=ok, where=where, **params)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.method, c.params) for c in self._calls[-10:]]
                    raise AssertionError(f"{count} {method} call(s) matching {params} not seen within {timeout}s "
                                         f"(got {len(found)}); last calls: {seen}")
                self._cond.wait(left)

    def texts(self, chat_id: int) -> List[str]:
        """The texts of the messages delivered to `chat_id`, oldest first."""
        return [c.params["text"] for c in self.calls("sendMessage", ok=True, chat_id=chat_id)]

    def fail_next(self, method: str, error_code: int = 500, description: str = "Internal Server Error",
                  parameters: Optional[dict] = None) -> None:
        """Answer the next call of `method` with this error (e.g. 429 with {"retry_after": 1})."""
        with self._cond:
            self._failures.append((method, error_code, description, parameters))

    # --- the Bot API -----------------------------------------------------------------------

    async def _params(self, request: web.Request) -> Dict[str, Any]:
        params: Dict[str, Any] = {key: _coerce(key, value) for key, value in request.query.items()}
        if request.method != "POST" or not request.can_read_body:
            return params
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise BotApiError(400, "Bad Request: request body must be a JSON object")
            params.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = {"file_name": value.filename, "size": len(value.file.read())}
                else:
                    params[key] = _coerce(key, value)
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z_]+)", request.path)
        if match is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        token, method = match.group(1), match.group(2)
        try:
            params = await self._params(request)
        except BotApiError as error:
            params, answer = {}, self._error(error)
        except ValueError:
            params, answer = {}, self._error(BotApiError(400, "Bad Request: can't parse request body"))
        else:
            answer = self._answer(token, method, params)
        status = 200 if answer["ok"] else answer["error_code"]
        with self._cond:
            self._calls.append(TelegramCall(method, params, token, status, answer))
            self._cond.notify_all()
        return web.json_response(answer, status=status)

    @staticmethod
    def _error(error: BotApiError) -> Dict[str, Any]:
        answer = {"ok": False, "error_code": error.code, "description": error.description}
        if error.parameters:
            answer["parameters"] = error.parameters
        return answer

    def _answer(self, token: str, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        try:
            if token != self.token:
                raise BotApiError(401, "Unauthorized")
            with self._cond:
                for index, (name, code, description, parameters) in enumerate(self._failures):
                    if name == method:
                        del self._failures[index]
                        raise BotApiError(code, description, parameters)
            handler = getattr(self, "_m_" + method, None)
            if handler is None and method.startswith("send"):
                handler = self._m_send_other
            if handler is None:
                raise BotApiError(404, "Not Found")
            return {"ok": True, "result": handler(params)}
        except BotApiError as error:
            return self._error(error)

    # results

    def _me(self) -> Dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "小智客服", "username": self.bot_username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    def _chat_of(self, params: Dict[str, Any]) -> Dict[str, Any]:
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            raise BotApiError(400, "Bad Request: chat_id is empty")
        if isinstance(chat_id, str) and not chat_id.startswith("@"):
            raise BotApiError(400, "Bad Request: chat not found")
        if chat_id in self.unreachable_chats:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        if isinstance(chat_id, str):
            return {"id": -1000000000000 - len(chat_id), "type": "channel", "title": chat_id[1:], "username": chat_id[1:]}
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "测试用户"}
        return {"id": chat_id, "type": "supergroup", "title": "测试群"}

    def _message(self, params: Dict[str, Any], **content: Any) -> Dict[str, Any]:
        message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": self._chat_of(params),
                   "from": self._me(), **content}
        markup = params.get("reply_markup")
        if markup is not None:
            self._check_markup(markup)
            if "inline_keyboard" in markup:
                message["reply_markup"] = markup
        return message

    @staticmethod
    def _check_markup(markup: Any) -> None:
        if not isinstance(markup, dict):
            raise BotApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            return
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise BotApiError(400, "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise BotApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode("utf-8")) <= CALLBACK_DATA_LIMIT:
                    raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if data is None and not button.get("url"):
                    raise BotApiError(400, "Bad Request: can't find field \"callback_data\"")

    def _m_getMe(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return self._me()

    def _m_sendMessage(self, params: Dict[str, Any]) -> Dict[str, Any]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            self._chat_of(params)
            raise BotApiError(400, "Bad Request: message text is empty")
        if _utf16_len(text) > TEXT_LIMIT:
            raise BotApiError(400, "Bad Request: message is too long")
        return self._message(params, text=text)

    def _m_sendPhoto(self, params: Dict[str, Any]) -> Dict[str, Any]:
        if not params.get("photo"):
            raise BotApiError(400, "Bad Request: there is no photo in the request")
        sizes = [{"file_id": f"AgAC{secrets.token_hex(8)}", "file_unique_id": secrets.token_hex(6),
                  "width": w, "height": h, "file_size": w * h // 10} for w, h in ((90, 90), (320, 320), (800, 800))]
        content: Dict[str, Any] = {"photo": sizes}
        if params.get("caption"):
            content["caption"] = params["caption"]
        return self._message(params, **content)

    def _m_sendDocument(self, params: Dict[str, Any]) -> Dict[str, Any]:
        if not params.get("document"):
            raise BotApiError(400, "Bad Request: there is no document in the request")
        return self._message(params, document={"file_id": f"BQAC{secrets.token_hex(8)}",
                                               "file_unique_id": secrets.token_hex(6), "file_name": "file"})

    def _m_sendLocation(self, params: Dict[str, Any]) -> Dict[str, Any]:
        try:
            location = {"latitude": float(params["latitude"]), "longitude": float(params["longitude"])}
        except (KeyError, TypeError, ValueError):
            raise BotApiError(400, "Bad Request: wrong latitude or longitude") from None
        return self._message(params, location=location)

    def _m_send_other(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return self._message(params)

    def _m_sendChatAction(self, params: Dict[str, Any]) -> bool:
        self._chat_of(params)
        if not params.get("action"):
            raise BotApiError(400, "Bad Request: action is empty")
        return True

    def _m_answerCallbackQuery(self, params: Dict[str, Any]) -> bool:
        if not params.get("callback_query_id"):
            raise BotApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        return True

    def _m_setWebhook(self, params: Dict[str, Any]) -> bool:
        if "url" not in params:
            raise BotApiError(400, "Bad Request: bad webhook: URL must be provided")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise BotApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {"url": params["url"], "has_custom_certificate": False, "pending_update_count": 0,
                        **({"allowed_updates": params["allowed_updates"]} if params.get("allowed_updates") else {})}
        return True

    def _m_deleteWebhook(self, params: Dict[str, Any]) -> bool:
        self.webhook = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        return True

    def _m_getWebhookInfo(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return dict(self.webhook)

    def _m_editMessageReplyMarkup(self, params: Dict[str, Any]) -> Any:
        if params.get("reply_markup") is not None:
            self._check_markup(params["reply_markup"])
        return True if params.get("inline_message_id") else self._message(params)

    def _m_editMessageText(self, params: Dict[str, Any]) -> Any:
        if not params.get("text"):
            raise BotApiError(400, "Bad Request: message text is empty")
        return True if params.get("inline_message_id") else self._message(params, text=params["text"])

    def _m_setMyCommands(self, params: Dict[str, Any]) -> bool:
        return True
