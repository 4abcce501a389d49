"""A local fake of WeChat for the WeChat channel tests — no internet.

- :class:`FakeWeChatApi`: the WeChat server API the channel calls (``/cgi-bin/token``,
  ``/cgi-bin/message/custom/send``), an aiohttp server on 127.0.0.1 in a background thread with its own
  event loop, recording every call thread-safely.
- :class:`WeChatPlatform`: acts like the WeChat platform towards the channel's webhook: signed URL
  verification and signed POSTs of text / event / media XML messages, signing like WeChat does
  (``sha1`` of the sorted token, timestamp and nonce).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlencode

import requests
from aiohttp import web

from fakes.threaded_app import ThreadedApp

ACCESS_TOKEN_TTL = 7200


@dataclass
class Call:
    path: str
    query: Dict[str, str]
    body: Any = None
    response: Dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


class FakeWeChatApi:
    """``api.weixin.qq.com`` as far as the channel uses it."""

    def __init__(self, app_id: str = "wxfake0123456789", app_secret: Optional[str] = None,
                 token: Optional[str] = None):
        self.app_id = app_id
        self.app_secret = app_secret or secrets.token_hex(16)
        self.token = token or "kefu" + secrets.token_hex(8)   # the server token configured in the console
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom_send)
        self._server = ThreadedApp(app, "fake-wechat")
        self.port, self.url = self._server.port, self._server.url
        self._lock = threading.Condition()
        self._calls: List[Call] = []
        self._tokens: Dict[str, float] = {}   # valid access tokens -> expiry

    # -- what the channel's credentials.yml entry looks like -------------------------------------------------

    def channel_credentials(self, **extra: Any) -> Dict[str, Any]:
        return {"token": self.token, "app_id": self.app_id, "app_secret": self.app_secret,
                "api_base_url": self.url, **extra}

    # -- server ------------------------------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            self._lock.notify_all()

    async def _token(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        if query.get("grant_type") != "client_credential" or query.get("appid") != self.app_id:
            result: Dict[str, Any] = {"errcode": 40013, "errmsg": "invalid appid"}
        elif query.get("secret") != self.app_secret:
            result = {"errcode": 40125, "errmsg": "invalid appsecret"}
        else:
            token = "ACCESS_" + secrets.token_hex(12)
            with self._lock:
                self._tokens[token] = time.time() + ACCESS_TOKEN_TTL
            result = {"access_token": token, "expires_in": ACCESS_TOKEN_TTL}
        self._record(Call("/cgi-bin/token", query, None, result))
        return web.json_response(result)

    async def _custom_send(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            valid = self._tokens.get(query.get("access_token", ""), 0) > time.time()
        if not valid:
            result: Dict[str, Any] = {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        elif not (isinstance(body, dict) and body.get("touser") and body.get("msgtype") == "text"
                  and isinstance(body.get("text"), dict) and body["text"].get("content")):
            result = {"errcode": 44002, "errmsg": "empty post data"}
        else:
            result = {"errcode": 0, "errmsg": "ok"}
        self._record(Call("/cgi-bin/message/custom/send", query, body, result))
        return web.json_response(result)

    def start(self) -> "FakeWeChatApi":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    # -- test helpers ------------------------------------------------------------------------------------

    def calls(self, path: Optional[str] = None) -> List[Call]:
        with self._lock:
            return [c for c in self._calls if path is None or c.path == path]

    def sent(self, openid: Optional[str] = None) -> List[Call]:
        """Accepted customer-service messages (to `openid`)."""
        return [c for c in self.calls("/cgi-bin/message/custom/send")
                if c.response.get("errcode") == 0 and (openid is None or c.body.get("touser") == openid)]

    def wait_for_calls(self, path: str, n: int = 1, timeout: float = 30.0,
                       where: Optional[Callable[[Call], bool]] = None) -> List[Call]:
        """At least `n` calls of `path` matching `where`, waiting up to `timeout` seconds."""
        deadline = time.time() + timeout
        with self._lock:
            while True:
                found = [c for c in self._calls if c.path == path and (where is None or where(c))]
                if len(found) >= n:
                    return found
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"expected {n} call(s) of {path}, got {len(found)}: {found}")
                self._lock.wait(left)

    def wait_for_messages(self, openid: str, n: int = 1, timeout: float = 30.0) -> List[str]:
        """The contents of at least `n` accepted customer-service messages to `openid`."""
        calls = self.wait_for_calls(
            "/cgi-bin/message/custom/send", n, timeout,
            where=lambda c: c.response.get("errcode") == 0 and isinstance(c.body, dict)
            and c.body.get("touser") == openid)
        return [c.body["text"]["content"] for c in calls]

    def revoke_tokens(self) -> None:
        """Invalidate every access token issued so far (the next send gets errcode 40001)."""
        with self._lock:
            self._tokens.clear()


# ---------------------------------------------------------------------------------------------------------------
# the WeChat platform, as seen by the channel's webhook


def sign(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode("utf-8")).hexdigest()


def signed_params(token: str, timestamp: Optional[str] = None, nonce: Optional[str] = None) -> Dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(secrets.randbelow(10 ** 9))
    return {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


_msg_ids = itertools.count(int(time.time() * 1000) % 10 ** 12 * 1000)


def new_msg_id() -> str:
    return str(next(_msg_ids))


def message_xml(openid: str, msg_type: str, fields: Dict[str, str], account: str = "gh_kefu000001",
                create_time: Optional[int] = None) -> str:
    parts = [f"<ToUserName>{_cdata(account)}</ToUserName>", f"<FromUserName>{_cdata(openid)}</FromUserName>",
             f"<CreateTime>{create_time or int(time.time())}</CreateTime>", f"<MsgType>{_cdata(msg_type)}</MsgType>"]
    for name, value in fields.items():
        parts.append(f"<{name}>{value}</{name}>" if name == "MsgId" else f"<{name}>{_cdata(value)}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def text_xml(openid: str, content: str, msg_id: Optional[str] = None, **kwargs: Any) -> str:
    return message_xml(openid, "text", {"Content": content, "MsgId": msg_id or new_msg_id()}, **kwargs)


def event_xml(openid: str, event: str, **kwargs: Any) -> str:
    return message_xml(openid, "event", {"Event": event}, **kwargs)


def image_xml(openid: str, msg_id: Optional[str] = None, **kwargs: Any) -> str:
    return message_xml(openid, "image", {"PicUrl": "http://mmbiz.qpic.cn/fake.jpg", "MediaId": "media_fake_1",
                                         "MsgId": msg_id or new_msg_id()}, **kwargs)


def parse_reply(body: str) -> Dict[str, str]:
    """The fields of a passive XML reply (the channel's answer to a POST)."""
    root = ET.fromstring(body)
    assert root.tag == "xml", body
    return {child.tag: (child.text or "") for child in root}


def new_openid() -> str:
    """A unique, realistic-looking openid (28 characters)."""
    return "o" + secrets.token_urlsafe(21)[:27].replace("-", "A").replace("_", "B")


class WeChatPlatform:
    """Calls a WeChat channel webhook the way the WeChat platform does."""

    def __init__(self, webhook_url: str, token: str, timeout: float = 30.0):
        self.webhook_url, self.token, self.timeout = webhook_url, token, timeout

    def verification_url(self, echostr: str, token: Optional[str] = None, **override: str) -> str:
        params = {**signed_params(token or self.token), "echostr": echostr, **override}
        return f"{self.webhook_url}?{urlencode(params)}"

    def verify(self, echostr: str, token: Optional[str] = None, **override: str) -> requests.Response:
        return requests.get(self.verification_url(echostr, token, **override), timeout=self.timeout)

    def post(self, body: str | bytes, params: Optional[Dict[str, str]] = None,
             token: Optional[str] = None) -> requests.Response:
        """POST `body` signed with `token` (default: the right one); `params` replaces the signed query.
        As WeChat does, the query also carries the sender's openid (not covered by the signature)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        query = params if params is not None else signed_params(token or self.token)
        if params is None:
            sender = re.search(rb"<FromUserName><!\[CDATA\[([A-Za-z0-9_-]+)\]\]>", data)
            if sender:
                query["openid"] = sender.group(1).decode()
        return requests.post(self.webhook_url, params=query, data=data,
                             headers={"Content-Type": "text/xml"}, timeout=self.timeout)

    def send_text(self, openid: str, content: str, msg_id: Optional[str] = None) -> requests.Response:
        return self.post(text_xml(openid, content, msg_id))

    def send_event(self, openid: str, event: str) -> requests.Response:
        return self.post(event_xml(openid, event))

    def reply_text(self, openid: str, content: str, msg_id: Optional[str] = None) -> str:
        """Send a text message and return the passive reply's content (asserting it is addressed right)."""
        answer = self.send_text(openid, content, msg_id)
        assert answer.status_code == 200, (answer.status_code, answer.text)
        assert answer.text != "success", "no passive reply: the bot was slower than the channel's reply_timeout"
        reply = parse_reply(answer.text)
        assert reply["ToUserName"] == openid and reply["MsgType"] == "text", reply
        return reply["Content"]
