"""Security (issue #7 item 6): authentication and authorisation of every HTTP surface, ownership proof (IDOR),
forged webhooks, rate limits, secrets in git and personal data in logs.

Against the session stack (real `rasa run` + action server) and the agent desk (in-process, fake Rasa API).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest
import requests
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from fakes.wechat_api import WeChatPlatform, new_openid, signed_params, text_xml
from kefu.channels.callback import SIGNATURE_HEADER, CallbackInput, sign
from kefu.channels.common import RATE_LIMITED_TEXT
from kefu.channels.rest import RestInput
from kefu.channels.telegram import SECRET_HEADER
from kefu.db import session_scope
from kefu.desk.app import create_app
from kefu.models import Customer, DeskSession, Handoff
from kefu.privacy import mask_text
from kefu.ratelimit import RateLimiter, limiter_from_settings
from test_desk_app import TOKEN as FAKE_RASA_TOKEN
from fakes.rasa_http import FakeRasa
from test_desk_app import make_handoff

ROOT = Path(__file__).resolve().parent.parent
# 李娜's orders 202411050005 / 202411180006: what 张伟 (or a stranger) must never see
LI_NA_SECRETS = ("兰蔻", "飞鹤", "圆通", "YT0000000000005", "李娜", "张杨路", "华润时代广场", "13900139000")


def sender(prefix: str = "sec") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reveals(text: str) -> List[str]:
    return [word for word in LI_NA_SECRETS if word in text]


# ------------------------------------------------------------------------------------------------
# Rasa's HTTP API: only with the token

API_CALLS = [("GET", "/conversations/{c}/tracker"), ("POST", "/conversations/{c}/tracker/events"),
             ("PUT", "/conversations/{c}/tracker/events"), ("GET", "/conversations/{c}/story"),
             ("POST", "/conversations/{c}/execute"), ("POST", "/conversations/{c}/trigger_intent"),
             ("POST", "/conversations/{c}/predict"), ("POST", "/conversations/{c}/messages"),
             ("POST", "/model/parse"), ("GET", "/domain"), ("GET", "/status"), ("PUT", "/model"),
             ("DELETE", "/model")]


@pytest.mark.parametrize("method, path", API_CALLS)
def test_rasa_http_api_refuses_requests_without_the_right_token(rasa_stack, method, path):
    url = rasa_stack.url + path.format(c=sender())
    body = {"event": "bot", "text": "伪造的客服消息"} if "events" in path else {"text": "你好", "name": "utter_greet"}
    for params in ({}, {"token": "wrong-" + rasa_stack.api_token}, {"token": ""}):
        response = requests.request(method, url, params=params, json=body, timeout=30)
        assert response.status_code in (401, 403), (method, path, params, response.status_code)
    # the right token opens it (the control)
    assert requests.get(f"{rasa_stack.url}/status", params={"token": rasa_stack.api_token}, timeout=30).ok


# ------------------------------------------------------------------------------------------------
# the REST channel: rate limits (unit level: RateLimiter and RestInput's handler; end to end on the stack)

def test_rate_limiter_is_a_token_bucket_per_key():
    now = [1000.0]
    limiter = RateLimiter(3, 6.0, clock=lambda: now[0], max_keys=2)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("a") == 2  # 0.5 tokens per second
    assert limiter.allow("b")  # keys are independent
    now[0] += 2.0
    assert limiter.allow("a") and not limiter.allow("a")
    limiter.allow("c")  # a third key: the least recently used one ("b") is forgotten
    assert set(limiter._buckets) == {"a", "c"}
    with pytest.raises(ValueError):
        limiter_from_settings({"sender_limit": 0}, "sender", 20, 10)
    with pytest.raises(ValueError):
        limiter_from_settings({"ip_window": "soon"}, "ip", 600, 10)
    assert limiter_from_settings({"ip_limit": "5"}, "ip", 600, 10).capacity == 5


def _rest_handler(channel: RestInput, on_new_message):
    routes = [route for route in channel.blueprint(on_new_message)._future_routes if route.uri == "/webhook"]
    return routes[0].handler


def _request(body: Any, ip: str = "203.0.113.7") -> SimpleNamespace:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
    return SimpleNamespace(body=raw, ip=ip, remote_addr="", args={}, headers={})


async def test_rest_channel_limits_per_ip_and_per_sender_and_hides_failures():
    seen: List[Any] = []

    async def bot(message):
        seen.append(message)
        if message.text == "崩溃":
            raise RuntimeError("boom 13800138000")
        await message.output_channel.send_text_message(message.sender_id, "好的")

    channel = RestInput.from_credentials({"sender_limit": 2, "sender_window": 60, "ip_limit": 5, "ip_window": 60})
    handler = _rest_handler(channel, bot)
    statuses = [(await handler(_request({"sender": "s1", "message": "你好"}))).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = await handler(_request({"sender": "s1", "message": "你好"}))
    assert limited.status == 429 and json.loads(limited.body)["text"] == RATE_LIMITED_TEXT
    assert int(limited.headers["Retry-After"]) >= 1
    # another sender from the same IP: one more, then the IP's 5 requests are spent (bad requests count too)
    assert (await handler(_request({"sender": "s2", "message": "你好"}))).status == 200
    assert (await handler(_request({"sender": "s3", "message": "你好"}))).status == 429
    # another IP is not affected; the client cannot pick the input channel
    response = await handler(_request({"sender": "s4", "message": "你好", "input_channel": "telegram"}, ip="198.51.100.1"))
    assert response.status == 200 and seen[-1].input_channel == "rest"
    # a failure inside the bot: a polite apology, no 500, no traceback
    response = await handler(_request({"sender": "s5", "message": "崩溃"}, ip="198.51.100.2"))
    assert response.status == 200
    assert json.loads(response.body) == [{"recipient_id": "s5", "text": "抱歉，系统刚刚开了小差，请稍后再发一次消息。"}]



async def test_callback_channel_limits_per_ip_and_per_sender_and_refuses_other_channels_ids():
    seen: List[Any] = []

    async def bot(message):
        seen.append(message.text)

    channel = CallbackInput.from_credentials({"url": "http://127.0.0.1:9/unused", "sender_limit": 2,
                                              "sender_window": 60, "ip_limit": 6, "ip_window": 60})
    handler = _rest_handler(channel, bot)
    statuses = [(await handler(_request({"sender": "c1", "message": f"第{n}条"}))).status for n in range(3)]
    assert statuses == [202, 202, 429]
    for forged in ("tg:12345", "WX:o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "web:" + "0" * 32):  # 400, and they count
        response = await handler(_request({"sender": forged, "message": "查订单"}))
        assert response.status == 400 and "another channel" in json.loads(response.body)["error"]
    limited = await handler(_request({"sender": "c2", "message": "你好"}))  # the IP's 7th request
    assert limited.status == 429 and json.loads(limited.body)["text"] == RATE_LIMITED_TEXT
    assert int(limited.headers["Retry-After"]) >= 1
    surrogate = json.dumps({"sender": "c2", "message": "你好\ud800"}).encode()  # a lone surrogate, as JSON escapes it
    assert (await handler(_request(surrogate, ip="198.51.100.9"))).status == 400
    await asyncio.sleep(0.1)  # the accepted messages run in the background
    assert seen == ["第0条", "第1条"]
    with pytest.raises(ValueError, match="sender_window"):
        CallbackInput.from_credentials({"url": "http://127.0.0.1:9/", "sender_window": "later"})

def test_rest_sender_rate_limit_on_the_stack(rasa_stack):
    phone, id_number = "13" + str(5 + secrets.randbelow(5)) + f"{secrets.randbelow(10 ** 8):08d}", "110101199003071234"
    me = f"flood-{phone}-{id_number}-x{uuid.uuid4().hex[:8]}"  # some clients build sender ids from such numbers

    def post(_: int) -> requests.Response:
        return requests.post(rasa_stack.webhook, json={"sender": me, "message": "你好"}, timeout=120)

    with ThreadPoolExecutor(28) as pool:
        responses = list(pool.map(post, range(28)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 429}, statuses
    assert 20 <= statuses.count(200) <= 23  # a burst of 20, plus what refilled (2 per second) meanwhile
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["text"] == RATE_LIMITED_TEXT and limited.headers["Retry-After"]
    # other senders are not affected
    assert rasa_stack.say(sender("calm"), "你好")
    # the warning names the sender, masked
    time.sleep(0.5)
    log = (rasa_stack.workdir / "rasa.log").read_text(encoding="utf-8", errors="replace")
    assert f"rate limit of sender {mask_text(me)} reached" in log
    assert phone not in log and id_number not in log


# ------------------------------------------------------------------------------------------------
# ownership proof through the REST webhook (IDOR)

def test_wrong_phone_reveals_nothing_of_another_customers_order(rasa_stack):
    me = sender("idor")
    said = [rasa_stack.text(me, "查一下订单202411050005")]
    said.append(rasa_stack.text(me, "13800138000"))  # 张伟's phone, not 李娜's
    said.append(rasa_stack.text(me, "物流到哪了，快递单号是多少"))
    assert "对不上" in said[1]
    assert not reveals("\n".join(said)), said


@pytest.mark.parametrize("payloads", [
    ['/inform{"order_id": "202411050005"}', '/track_logistics{"order_id": "202411050005"}'],
    ['/query_order{"order_id": "202411050005", "customer_id": "2"}', '/inform{"customer_id": "2"}'],
    ['/inform{"order_id": "202411050005 OR 1=1"}', '/inform{"order_id": "202411050005\' OR \'1\'=\'1"}'],
    ['/inform{"order_id": "202411050005", "phone": "1234"}'],
])
def test_slot_payloads_cannot_bypass_the_proof(rasa_stack, payloads):
    me = sender("idor")
    said = [rasa_stack.text(me, payload) for payload in payloads]
    said.append(rasa_stack.text(me, "查一下我的订单详情和物流"))
    assert not reveals("\n".join(said)), said
    slots = requests.get(f"{rasa_stack.url}/conversations/{me}/tracker", params={"token": rasa_stack.api_token},
                         timeout=30).json()["slots"]
    assert not slots.get("customer_id"), slots


def test_metadata_cannot_bypass_the_proof(rasa_stack):
    with session_scope(rasa_stack.db_url) as session:
        li_na = session.execute(select(Customer.id).where(Customer.phone == "13900139000")).scalar_one()
    me = sender("idor")
    metadata = {"customer_id": li_na, "customer_no": "C0002", "phone": "13900139000", "verified": True,
                "slots": {"customer_id": str(li_na)}}
    said = []
    for text in ("查一下订单202411050005", "物流呢", "查一下订单202411180006"):
        response = requests.post(rasa_stack.webhook, json={"sender": me, "message": text, "metadata": metadata},
                                 timeout=60)
        assert response.status_code == 200
        said.append("\n".join(m.get("text", "") for m in response.json()))
    assert any("手机号" in text for text in said), said  # the bot still asks for the proof
    assert not reveals("\n".join(said)), said


def test_a_proven_customer_cannot_read_another_customers_order(rasa_stack):
    me = sender("idor")
    rasa_stack.text(me, "查一下订单202411010001")
    assert "华为" in rasa_stack.text(me, "13800138000")  # 张伟 proved his own order
    said = [rasa_stack.text(me, "再查一下订单202411050005"), rasa_stack.text(me, "202411050005的物流呢")]
    assert not reveals("\n".join(said)), said


def test_rest_clients_cannot_pose_as_another_channels_conversation(rasa_stack, fake_telegram):
    """A Telegram chat that proved its order: a REST client using its conversation id gets a 400."""
    chat_id = 10 ** 9 + secrets.randbelow(9 * 10 ** 9)
    for text in ("查一下订单202411010001", "13800138000"):
        update_ = {"update_id": 10 ** 9 + secrets.randbelow(2 ** 30),
                   "message": {"message_id": 1 + secrets.randbelow(10 ** 6), "date": int(time.time()), "text": text,
                               "chat": {"id": chat_id, "type": "private"},
                               "from": {"id": chat_id, "is_bot": False, "first_name": "张"}}}
        answer = requests.post(f"{rasa_stack.url}/webhooks/telegram/webhook", json=update_, timeout=30,
                               headers={SECRET_HEADER: fake_telegram.webhook_secret})
        assert answer.status_code == 200
    deadline = time.monotonic() + 60  # the chat's messages are answered in order, after the webhook returned
    while not any("华为" in text for text in fake_telegram.texts(chat_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any("华为" in text for text in fake_telegram.texts(chat_id)), fake_telegram.texts(chat_id)
    for impostor in (f"tg:{chat_id}", f"TG:{chat_id}", "wx:o" + "A" * 27, "web:" + "0" * 32):
        response = requests.post(rasa_stack.webhook, timeout=30,
                                 json={"sender": impostor, "message": "查一下订单202411010001",
                                       "input_channel": "telegram"})
        assert response.status_code == 400 and "华为" not in response.text
    # and a REST message cannot claim another input channel
    me = sender()
    rasa_stack.say(me, "你好")
    requests.post(rasa_stack.webhook, json={"sender": me, "message": "你好", "input_channel": "telegram"}, timeout=30)
    tracker = requests.get(f"{rasa_stack.url}/conversations/{me}/tracker", params={"token": rasa_stack.api_token},
                           timeout=30).json()
    assert {e.get("input_channel") for e in tracker["events"] if e["event"] == "user"} == {"rest"}


# ------------------------------------------------------------------------------------------------
# forged webhook requests: the 4xx matrix in one place (details in each channel's tests)

def _forged_requests(stack, callback_receiver, fake_telegram, fake_wechat) -> Dict[str, requests.Response]:
    message = json.dumps({"sender": sender("forged"), "message": "你好"}).encode()
    callback = f"{stack.url}/webhooks/callback/webhook"
    telegram = f"{stack.url}/webhooks/telegram/webhook"
    update_ = json.dumps({"update_id": 1, "message": {"message_id": 1, "date": 1, "text": "你好",
                                                      "chat": {"id": 1, "type": "private"}}}).encode()
    wechat = WeChatPlatform(f"{stack.url}/webhooks/wechat/webhook", fake_wechat.token)
    xml = text_xml(new_openid(), "你好")
    stale = signed_params(fake_wechat.token)
    stale["nonce"] += "1"
    return {
        "callback without signature": requests.post(callback, data=message, timeout=30),
        "callback with a wrong secret": requests.post(callback, data=message, timeout=30,
                                                      headers={SIGNATURE_HEADER: sign("wrong", message)}),
        "callback signature of another body": requests.post(
            callback, data=message, timeout=30, headers={SIGNATURE_HEADER: sign(callback_receiver.secret, b"{}")}),
        "telegram without secret": requests.post(telegram, data=update_, timeout=30),
        "telegram with a wrong secret": requests.post(telegram, data=update_, timeout=30,
                                                      headers={SECRET_HEADER: "wrong-secret"}),
        "wechat post without signature": wechat.post(xml, params={}),
        "wechat post with a wrong token": wechat.post(xml, token="not-the-token"),
        "wechat post with a tampered nonce": wechat.post(xml, params=stale),
        "wechat url verification with a wrong token": wechat.verify("echo", token="not-the-token"),
        "rest as another channel's conversation": requests.post(
            stack.webhook, json={"sender": "tg:1", "message": "你好"}, timeout=30),
        "rasa api without token": requests.get(f"{stack.url}/conversations/x/tracker", timeout=30),
        "rasa api with a wrong token": requests.get(f"{stack.url}/conversations/x/tracker",
                                                    params={"token": "wrong"}, timeout=30),
    }


def test_forged_webhook_requests_are_refused(rasa_stack, callback_receiver, fake_telegram, fake_wechat):
    expected = {"rest as another channel's conversation": 400, "rasa api without token": 401,
                "rasa api with a wrong token": 401}
    answers = _forged_requests(rasa_stack, callback_receiver, fake_telegram, fake_wechat)
    got = {name: response.status_code for name, response in answers.items()}
    assert got == {name: expected.get(name, 403) for name in answers}, got


# ------------------------------------------------------------------------------------------------
# the agent desk

@pytest.fixture
async def fake_rasa():
    fake = await FakeRasa(FAKE_RASA_TOKEN).start()
    yield fake
    await fake.close()


async def _desk_client(db_url: str, rasa_url: str) -> TestClient:
    client = TestClient(TestServer(create_app(db_url, rasa_url, FAKE_RASA_TOKEN, sse_interval=0.05,
                                              assign_interval=0)), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return client


@pytest.fixture
async def desk(fresh_db_url, fake_rasa):
    client = await _desk_client(fresh_db_url, fake_rasa.url)
    yield client
    await client.close()


async def _login(client: TestClient, agent: str, password: str = "kefu123") -> str:
    client.session.cookie_jar.clear()
    response = await client.post("/api/login", json={"agent_id": agent, "password": password})
    assert response.status == 200, await response.text()
    return (await response.json())["csrf"]


def _api_routes(app) -> List[tuple]:
    routes = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and route.method in ("GET", "POST") and path != "/api/login":
            routes.append((route.method, path))
    return sorted(set(routes))


async def test_every_desk_api_endpoint_needs_a_session(desk, fresh_db_url):
    handoff_id = make_handoff(fresh_db_url)
    routes = _api_routes(desk.server.app)
    assert len(routes) >= 10, routes
    for cookie in (None, "forged-" + uuid.uuid4().hex):
        desk.session.cookie_jar.clear()
        if cookie:
            desk.session.cookie_jar.update_cookies({"kefu_desk": cookie})
        for method, path in routes:
            response = await desk.request(method, path.replace("{handoff_id}", str(handoff_id)), json={},
                                          headers={"X-CSRF-Token": "x"})
            assert response.status == 401, (method, path, response.status)
            assert (await response.json())["error"]


async def test_every_desk_write_needs_the_sessions_csrf_token(desk, fresh_db_url):
    handoff_id = make_handoff(fresh_db_url)
    other_csrf = await _login(desk, "A001")  # a valid CSRF token, but of another session
    csrf = await _login(desk, "S001")
    writes = [path for method, path in _api_routes(desk.server.app) if method == "POST"]
    assert len(writes) >= 6, writes
    for path in writes:
        path = path.replace("{handoff_id}", str(handoff_id))
        for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": csrf[:-1]}, {"X-CSRF-Token": other_csrf}):
            response = await desk.post(path, json={"online": True, "text": "x", "note": "x"}, headers=headers)
            assert response.status == 403, (path, headers, response.status)
    with session_scope(fresh_db_url) as session:
        assert session.get(Handoff, handoff_id).status == "waiting"  # nothing happened


async def test_agents_cannot_read_or_act_on_each_others_conversations_but_a_supervisor_can(
        desk, fake_rasa, fresh_db_url):
    handoff_id = make_handoff(fresh_db_url)
    csrf = await _login(desk, "A001")
    assert (await desk.post("/api/status", json={"online": True}, headers={"X-CSRF-Token": csrf})).status == 200
    with session_scope(fresh_db_url) as session:
        assert session.get(Handoff, handoff_id).assigned_agent == "A001"
    events_before = len(fake_rasa.events)

    csrf = await _login(desk, "A002")
    headers = {"X-CSRF-Token": csrf}
    base = f"/api/conversations/{handoff_id}"
    assert (await desk.get(base)).status == 403
    attempts = [("reply", {"text": "我是别的客服"}), ("transfer", {"to_skill_group": "售后"}),
                ("ticket", {"subject": "s", "category": "订单物流", "priority": "normal"}), ("close", {"note": "x"})]
    for action, body in attempts:
        response = await desk.post(f"{base}/{action}", json=body, headers=headers)
        assert response.status == 403, (action, response.status)
        assert "another agent" in (await response.json())["error"]
    queue = await (await desk.get("/api/queue")).json()
    assert queue["mine"] == [] and "assigned" not in queue
    assert len(fake_rasa.events) == events_before  # nothing reached the customer
    with session_scope(fresh_db_url) as session:
        handoff = session.get(Handoff, handoff_id)
        assert (handoff.status, handoff.assigned_agent, handoff.skill_group) == ("assigned", "A001", "订单物流")

    csrf = await _login(desk, "S001")
    headers = {"X-CSRF-Token": csrf}
    assert (await desk.get(base)).status == 200
    assert (await desk.post(f"{base}/reply", json={"text": "主管介入"}, headers=headers)).status == 200
    assert (await desk.post(f"{base}/close", json={"note": "主管关闭"}, headers=headers)).status == 200
    with session_scope(fresh_db_url) as session:
        assert session.get(Handoff, handoff_id).status == "closed"


async def test_desk_sessions_expire_and_end_on_logout(desk, fresh_db_url):
    csrf = await _login(desk, "A001")
    assert (await desk.get("/api/me")).status == 200
    with session_scope(fresh_db_url) as session:
        session.execute(update(DeskSession).values(expires_at=DeskSession.created_at))  # "8 hours later"
    assert (await desk.get("/api/me")).status == 401
    assert (await desk.post("/api/status", json={"online": True}, headers={"X-CSRF-Token": csrf})).status == 401
    with session_scope(fresh_db_url) as session:
        assert session.execute(select(DeskSession)).scalars().all() == []  # the expired row is gone

    csrf = await _login(desk, "A001")
    cookie = next(c.value for c in desk.session.cookie_jar if c.key == "kefu_desk")
    assert (await desk.post("/api/logout", headers={"X-CSRF-Token": csrf})).status == 200
    desk.session.cookie_jar.update_cookies({"kefu_desk": cookie})  # replaying the old cookie
    assert (await desk.get("/api/me")).status == 401


async def test_passwords_and_session_tokens_are_stored_hashed(desk, fresh_db_url):
    await _login(desk, "A001")
    cookie = next(c.value for c in desk.session.cookie_jar if c.key == "kefu_desk")
    path = fresh_db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        agents = connection.execute("SELECT agent_id, password_hash FROM desk_agents").fetchall()
        sessions = connection.execute("SELECT token_hash FROM desk_sessions").fetchall()
    assert agents and all(h.startswith("scrypt$") and "kefu123" not in h for _, h in agents)
    assert sessions == [(hashlib.sha256(cookie.encode()).hexdigest(),)]
    raw = Path(path).read_bytes()
    assert b"kefu123" not in raw and cookie.encode() not in raw


async def test_desk_logins_are_rate_limited_per_agent_and_per_ip(fresh_db_url, fake_rasa):
    client = await _desk_client(fresh_db_url, fake_rasa.url)
    started = time.monotonic()
    try:
        for _ in range(10):
            response = await client.post("/api/login", json={"agent_id": "A002", "password": "guess"})
            assert response.status == 401
        # the 11th attempt within a minute is refused, even with the right password
        response = await client.post("/api/login", json={"agent_id": "A002", "password": "kefu123"})
        assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
        assert "too many login attempts" in (await response.json())["error"]
        # another agent still may log in, until the client's 30 attempts per minute are spent
        assert (await client.post("/api/login", json={"agent_id": "A001", "password": "kefu123"})).status == 200
        statuses = []
        while 429 not in statuses and len(statuses) < 40:
            statuses.append((await client.post("/api/login", json={"agent_id": f"X{len(statuses):03d}",
                                                                    "password": "x"})).status)
        # 12 attempts so far, so 18 more are allowed, plus what refilled meanwhile (1 per 2 s; scrypt is slow)
        refilled = (time.monotonic() - started) / 2
        assert statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses
        assert 18 <= len(statuses) - 1 <= 18 + refilled + 1, (statuses, refilled)
    finally:
        await client.close()


# ------------------------------------------------------------------------------------------------
# secrets in git

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "API key": re.compile(r"\bsk-[A-Za-z0-9]{20,}\b"),
    "Telegram bot token": re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b"),
    # a generated secret (secrets.token_urlsafe/token_hex of 16+ bytes) assigned to a secret-like name
    "secret value": re.compile(r"(?i)(?:token|secret|passw(?:or)?d|api[_-]?key)[\"']?\s*[:=]\s*[\"']?"
                               r"[A-Za-z0-9_\-+/]{32,}"),
    # the shape of the tokens the test session generates (conftest.STACK_API_TOKEN)
    "test session token": re.compile(r"\btest-[A-Za-z0-9_-]{22}(?![A-Za-z0-9_-])"),
}


def _tracked_text_files() -> Dict[str, str]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = {}
    for name in names.decode("utf-8").split("\0"):
        if not name or name in ("uv.lock", "package-lock.json") or name.endswith((".png", ".jpg", ".ico")):
            continue
        path = ROOT / name
        if path.is_file():
            files[name] = path.read_text(encoding="utf-8", errors="replace")
    return files


def test_no_secret_is_tracked_in_git(rasa_stack, channel_credentials):
    files = _tracked_text_files()
    assert len(files) > 50
    found = [(name, kind, match.group(0)[:40]) for name, text in files.items()
             for kind, pattern in SECRET_PATTERNS.items() for match in pattern.finditer(text)]
    assert found == []
    # the generated token of `make run` lives in var/ (ignored), never in git
    tracked = set(files)
    assert not any(name.startswith("var/") for name in tracked)
    for generated in ("var/rasa_token", "var/credentials.yml"):
        assert subprocess.run(["git", "check-ignore", "-q", generated], cwd=ROOT).returncode == 0, generated
    # no secret of this test session (API token, webhook secrets, app secrets) is written into a tracked file
    secrets_now = [rasa_stack.api_token] + [str(value) for settings in channel_credentials.values()
                                            for key, value in (settings or {}).items()
                                            if any(word in key for word in ("token", "secret"))]
    local_token = ROOT / "var" / "rasa_token"
    if local_token.exists():
        secrets_now.append(local_token.read_text().strip())
    assert all(len(s) >= 8 for s in secrets_now)
    assert not [name for name, text in files.items() for s in secrets_now if s in text]
    # the checked-in credentials.yml holds channel settings only, no secrets
    credentials = (ROOT / "credentials.yml").read_text(encoding="utf-8")
    assert not re.search(r"(?im)^\s*(access_token|secret|webhook_secret|app_secret|token)\s*:", credentials)


# ------------------------------------------------------------------------------------------------
# personal data in logs

def test_phone_and_id_numbers_are_masked_in_the_stack_logs(rasa_stack, callback_receiver):
    phone = "13" + str(5 + secrets.randbelow(5)) + f"{secrets.randbelow(10 ** 8):08d}"
    id_number = "110101199003071234"
    me = f"pii-{phone}-{id_number}-x{uuid.uuid4().hex[:8]}"  # some clients build sender ids from such numbers
    texts = [f"我的手机号是{phone}，身份证号{id_number}", "查一下订单202411010001", "13800138000",
             f'/{{"phone": "{phone}", "id": "{id_number}"}}',  # Rasa itself logs such unparsable payloads
             f"/no_such_intent {phone} {id_number}", f"转人工，我的电话{phone}，身份证{id_number}"]
    for text in texts:
        response = requests.post(rasa_stack.webhook, json={"sender": me, "message": text,
                                                           "metadata": {"phone": phone, "id": id_number}}, timeout=60)
        assert response.status_code == 200, response.text
    # the same through the callback channel (its log lines and failures included)
    cb = sender("pii")
    body = json.dumps({"sender": cb, "message": f"手机{phone} 身份证{id_number}"}, ensure_ascii=False).encode()
    requests.post(f"{rasa_stack.url}/webhooks/callback/webhook", data=body, timeout=30,
                  headers={SIGNATURE_HEADER: sign(callback_receiver.secret, body)})
    callback_receiver.wait(cb, timeout=60)
    time.sleep(1.0)  # let the servers flush their logs
    logs = {name: (rasa_stack.workdir / name).read_text(encoding="utf-8", errors="replace")
            for name in ("rasa.log", "actions.log")}
    assert logs["rasa.log"].strip()
    for name, text in logs.items():
        for raw in (phone, id_number, "13800138000"):
            assert raw not in text, f"{raw} appears unmasked in {name}: " + \
                                    text[max(0, text.find(raw) - 300):text.find(raw) + 100]
