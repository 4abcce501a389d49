"""Telegram channel: webhook -> Rasa -> Bot API, against a local fake Bot API (tests/fakes/telegram_api.py).

The first part needs no Rasa (message splitting, callback keys, the output channel against a private fake);
the second posts Updates to the session stack's ``/webhooks/telegram/webhook`` like Telegram does and
checks what reaches the fake Bot API the stack's channel talks to.
"""
from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import pytest
import requests
from fakes.telegram_api import FakeTelegramAPI
from rasa.shared.exceptions import RasaException
from telegram import Update

from kefu.channels.common import CLIPPED_NOTICE, MAX_MESSAGE_CHARS, RATE_LIMITED_TEXT
from kefu.channels.telegram import (APOLOGY, EXPIRED_BUTTON_REPLY, NON_TEXT_REPLY, SECRET_HEADER, TEXT_LIMIT,
                                    CallbackPayloads, TelegramInput, credentials_from_env, parse_chat_id,
                                    split_message)

GREETING = "我是小智"  # domain/responses.yml utter_greet
_chat_ids = itertools.count(random.randint(10**8, 9 * 10**8))
_update_ids = itertools.count(random.randint(10**5, 10**8))
_message_ids = itertools.count(1)


def new_chat() -> int:
    return next(_chat_ids)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- Updates as Telegram sends them ---------------------------------------------------------------

def tg_user(chat_id: int) -> Dict[str, Any]:
    return {"id": chat_id, "is_bot": False, "first_name": "测试", "last_name": "用户", "language_code": "zh-hans"}


def tg_message(chat_id: int, **content: Any) -> Dict[str, Any]:
    return {"message_id": next(_message_ids), "date": int(time.time()), "from": tg_user(chat_id),
            "chat": {"id": chat_id, "type": "private", "first_name": "测试", "last_name": "用户"}, **content}


def tg_update(**kind: Any) -> Dict[str, Any]:
    return {"update_id": next(_update_ids), **kind}


def text_update(chat_id: int, text: str) -> Dict[str, Any]:
    content: Dict[str, Any] = {"text": text}
    if text.startswith("/"):
        content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return tg_update(message=tg_message(chat_id, **content))


def callback_update(chat_id: int, data: str, keyboard: List[List[dict]], text: str = "请选择：") -> Dict[str, Any]:
    """A press of the button with `data` on the bot's message carrying `keyboard`."""
    bot_message = {**tg_message(chat_id, text=text), "from": {"id": 1, "is_bot": True, "first_name": "小智客服"},
                   "reply_markup": {"inline_keyboard": keyboard}}
    return tg_update(callback_query={"id": str(random.getrandbits(60)), "from": tg_user(chat_id),
                                     "chat_instance": "-81723981273", "data": data, "message": bot_message})


# --- unit tests: no Rasa ------------------------------------------------------------------------

def test_split_message_prefers_line_breaks_and_keeps_every_line():
    lines = [f"第{i}行：" + "退货政策说明" * 30 for i in range(60)]  # ~185 characters a line
    text = "\n".join(lines)
    parts = split_message(text)
    assert len(parts) > 1
    assert all(0 < utf16_len(part) <= TEXT_LIMIT for part in parts)
    assert "\n".join(parts) == text  # cut only at line breaks: nothing lost, nothing cut mid-line
    assert split_message("  短消息 \n") == ["短消息"]
    assert split_message("") == [] and split_message(None) == []


def test_split_message_without_line_breaks_cuts_at_sentences_then_hard():
    sentences = "请您在签收后七天内申请退货。" * 700
    parts = split_message(sentences)
    assert len(parts) == 3 and all(part.endswith("。") for part in parts)
    assert "".join(parts) == sentences
    blob = "字" * 9000
    parts = split_message(blob)
    assert [len(p) for p in parts] == [4096, 4096, 808] and "".join(parts) == blob


def test_split_message_counts_utf16_units_like_telegram():
    text = "😊" * 3000  # 6000 UTF-16 units
    parts = split_message(text)
    assert [utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_callback_payloads_short_as_is_long_under_bounded_keys():
    payloads = CallbackPayloads(capacity=3)
    assert payloads.callback_data("/affirm") == "/affirm"
    long = '/ask_faq{"kb_id": "after_sales_return_policy_07", "source": "telegram_channel_test"}'
    key = payloads.callback_data(long)
    assert key.startswith(CallbackPayloads.PREFIX) and len(key.encode()) <= 64 and key != long
    assert payloads.callback_data(long) == key  # stable
    assert payloads.resolve(key) == long and payloads.resolve("/affirm") == "/affirm"
    assert payloads.resolve("k:unknownkey") is None
    for i in range(5):
        payloads.callback_data(long + str(i))
    assert len(payloads) == 3 and payloads.resolve(key) is None  # the oldest was forgotten
    assert payloads.resolve(payloads.callback_data("k:looks-like-a-key")) == "k:looks-like-a-key"


def test_conversation_ids_and_credentials_from_env():
    assert parse_chat_id("tg:123") == 123 and parse_chat_id("tg:-1001234") == -1001234
    assert parse_chat_id("456") == 456
    for wrong in ("wx:123", "tg:abc", "tg:", ""):
        with pytest.raises(ValueError):
            parse_chat_id(wrong)
    assert credentials_from_env({}) is None and credentials_from_env({"TELEGRAM_TOKEN": " "}) is None
    assert credentials_from_env({"TELEGRAM_TOKEN": "1:abc", "TELEGRAM_WEBHOOK_SECRET": "s3cret"}) == {
        "access_token": "1:abc", "webhook_secret": "s3cret"}
    assert credentials_from_env({"TELEGRAM_TOKEN": "1:abc", "TELEGRAM_WEBHOOK_SECRET": "s",
                                 "TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081/bot"})["base_url"] == \
        "http://127.0.0.1:8081/bot"


def test_credentials_need_a_token_and_a_valid_secret():
    channel = TelegramInput.from_credentials({"access_token": "1:abc", "webhook_secret": "a-b_C9"})
    assert channel.name() == "telegram" and channel.base_url == "https://api.telegram.org/bot"
    assert channel.secret_ok("a-b_C9") and not channel.secret_ok("a-b_C8") and not channel.secret_ok(None)
    assert not channel.secret_ok("ümlaut")
    for credentials in ({"access_token": "1:abc"}, {"webhook_secret": "abc"},
                        {"access_token": "1:abc", "webhook_secret": "has spaces"}):
        with pytest.raises(RasaException):
            TelegramInput.from_credentials(credentials)
    with pytest.raises(RasaException):
        TelegramInput.from_credentials(None)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"', b'{"hello": "world"}',
                                  b'{"update_id": "7"}', b'{"update_id": true}',
                                  b'{"update_id": 7, "message": {"text": "no chat nor date"}}'])
def test_parse_update_rejects_what_is_not_an_update(body):
    assert TelegramInput.parse_update(body) is None


def test_parse_update_accepts_an_update():
    update = TelegramInput.parse_update(json.dumps(text_update(5, "你好")).encode())
    assert isinstance(update, Update) and update.message.text == "你好" and update.message.chat.id == 5


@pytest.fixture
def private_fake():
    with FakeTelegramAPI() as fake:
        yield fake


@pytest.fixture
async def channel(private_fake):
    channel = TelegramInput.from_credentials({"access_token": private_fake.token, "base_url": private_fake.base_url,
                                              "webhook_secret": private_fake.webhook_secret})
    yield channel
    await channel.close()


async def test_output_splits_long_replies_and_keeps_buttons_on_the_last_part(channel, private_fake):
    out = channel.get_output_channel()
    text = "\n".join("订单明细第%d行：华为手机一部，数量1，金额￥5999.00" % i for i in range(300))
    await out.send_text_with_buttons("tg:42", text, [{"title": "转人工", "payload": "/request_human"}])
    sent = private_fake.calls("sendMessage", chat_id=42)
    assert len(sent) >= 2 and all(call.ok for call in sent)  # the fake refuses texts over 4096
    assert "\n".join(call.params["text"] for call in sent) == text
    assert [("reply_markup" in call.params) for call in sent] == [False] * (len(sent) - 1) + [True]
    assert sent[-1].params["reply_markup"]["inline_keyboard"] == [[{"text": "转人工", "callback_data": "/request_human"}]]


async def test_output_long_payloads_fit_callback_data_and_resolve(channel, private_fake):
    out = channel.get_output_channel()
    long_payload = '/inform{"order_id": "202411010001", "phone": "13800138000", "reason": "尺码不合适"}'
    assert len(long_payload.encode()) > 64
    await out.send_text_with_buttons("tg:43", "请确认：", [
        {"title": "确认", "payload": long_payload}, {"title": "否", "payload": "/deny"},
        {"title": "官网", "url": "https://shop.example.com/help", "type": "web_url"}])
    call = private_fake.wait_for("sendMessage", chat_id=43)[0]
    rows = call.params["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in rows] == [["确认"], ["否"], ["官网"]]
    key = rows[0][0]["callback_data"]
    assert len(key.encode()) <= 64 and channel.payloads.resolve(key) == long_payload
    assert rows[1][0]["callback_data"] == "/deny" and rows[2][0]["url"] == "https://shop.example.com/help"


async def test_output_images_custom_json_and_failures(channel, private_fake):
    out = channel.get_output_channel()
    await out.send_image_url("tg:44", "https://shop.example.com/p/1.jpg")
    assert private_fake.wait_for("sendPhoto", chat_id=44)[0].params["photo"] == "https://shop.example.com/p/1.jpg"
    # a Bot API send method passes through, always to this chat
    await out.send_custom_json("tg:44", {"method": "sendLocation", "latitude": 31.23, "longitude": 121.47,
                                         "chat_id": 999})
    location = private_fake.wait_for("sendLocation", chat_id=44)[0]
    assert float(location.params["latitude"]) == 31.23 and not private_fake.calls(chat_id=999)
    await out.send_custom_json("tg:44", {"telegram": {"method": "sendMessage", "params": {"text": "自定义"}}})
    assert private_fake.texts(44) == ["自定义"]
    # no method / not a send method: ignored
    await out.send_custom_json("tg:44", {"foo": "bar"})
    await out.send_custom_json("tg:44", {"method": "deleteWebhook"})
    assert not private_fake.calls("deleteWebhook") and len(private_fake.calls(chat_id=44)) == 3
    # Telegram could not fetch the image: the link is sent instead
    private_fake.fail_next("sendPhoto", 400, "Bad Request: wrong file identifier/HTTP URL specified")
    await out.send_image_url("tg:44", "https://shop.example.com/p/broken.jpg")
    assert private_fake.texts(44)[-1] == "https://shop.example.com/p/broken.jpg"
    # a chat that blocked the bot, and a conversation of another channel: logged, never raised
    private_fake.unreachable_chats.add(45)
    await out.send_text_message("tg:45", "您好")
    assert private_fake.calls("sendMessage", chat_id=45, ok=False)[0].status == 403
    await out.send_text_message("wx:oAbc", "您好")


async def test_output_retries_once_after_a_server_error(channel, private_fake):
    private_fake.fail_next("sendMessage", 502, "Bad Gateway")
    await channel.get_output_channel().send_text_message("tg:46", "您的退款已到账")
    assert [call.ok for call in private_fake.calls("sendMessage", chat_id=46)] == [False, True]


async def test_wrong_token_is_logged_not_raised(private_fake, caplog):
    channel = TelegramInput("123:wrong", "secret", base_url=private_fake.base_url)
    await channel.get_output_channel().send_text_message("tg:47", "您好")
    assert private_fake.calls("getMe", ok=False)[0].status == 401 and not private_fake.calls("sendMessage")
    assert "123:wrong" not in caplog.text  # the token never reaches the logs
    await channel.close()


async def test_handle_update_apologises_when_rasa_fails(channel, private_fake):
    async def broken(message):
        raise RuntimeError("tracker store down")

    update = Update.de_json(text_update(48, "查一下我的订单，手机13800138000"), None)
    await channel.handle_update(update, broken)
    assert private_fake.texts(48) == [APOLOGY]


async def test_handle_update_passes_text_and_metadata_to_rasa(channel, private_fake):
    received = []

    async def collect(message):
        received.append(message)

    await channel.handle_update(Update.de_json(text_update(49, "  我要退货 "), None), collect)
    await channel.handle_update(Update.de_json(text_update(49, '/inform{"order_id": "1"}'), None), collect)
    await channel.handle_update(Update.de_json(text_update(49, "/start@kefu_test_bot promo42"), None), collect)
    assert [m.text for m in received] == ["我要退货", 'inform{"order_id": "1"}', "/greet"]
    first = received[0]
    assert first.sender_id == "tg:49" and first.input_channel == "telegram"
    assert first.metadata["telegram"]["chat_id"] == 49 and first.metadata["telegram"]["chat_type"] == "private"
    assert "first_name" not in json.dumps(first.metadata)
    assert private_fake.calls("sendChatAction", chat_id=49, action="typing")


async def test_a_chat_over_its_rate_limit_is_told_once_and_not_processed(private_fake):
    channel = TelegramInput.from_credentials({"access_token": private_fake.token, "base_url": private_fake.base_url,
                                              "webhook_secret": private_fake.webhook_secret,
                                              "sender_limit": 2, "sender_window": 60})
    received = []

    async def collect(message):
        received.append(message.text)

    try:
        for text in ("一", "二", "三", "四"):
            await channel.handle_update(Update.de_json(text_update(61, text), None), collect)
        keyboard = [[{"text": "查订单", "callback_data": "/query_order"}]]
        await channel.handle_update(Update.de_json(callback_update(61, "/query_order", keyboard), None), collect)
        await channel.handle_update(Update.de_json(text_update(62, "别的客户"), None), collect)
    finally:
        await channel.close()
    assert received == ["一", "二", "别的客户"]
    assert private_fake.texts(61) == [RATE_LIMITED_TEXT]  # one notice for the three refused updates
    assert len(private_fake.calls("answerCallbackQuery")) == 1  # the refused button press stops spinning
    with pytest.raises(ValueError, match="sender_limit"):
        TelegramInput.from_credentials({"access_token": private_fake.token, "webhook_secret": "s",
                                        "sender_limit": "many"})


def test_fake_bot_api_speaks_like_telegram(private_fake):
    wrong = requests.post(f"{private_fake.base_url}123:nope/getMe", timeout=5)
    assert wrong.status_code == 401 and wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    unknown = requests.post(f"{private_fake.base_url}{private_fake.token}/fooBar", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["ok"] is False
    me = requests.post(f"{private_fake.base_url}{private_fake.token}/getMe", timeout=5).json()
    assert me["ok"] and me["result"]["is_bot"] and me["result"]["username"] == private_fake.bot_username
    sent = requests.post(f"{private_fake.base_url}{private_fake.token}/sendMessage",
                         json={"chat_id": 7, "text": "你好"}, timeout=5).json()["result"]
    assert sent["chat"]["id"] == 7 and sent["text"] == "你好" and sent["message_id"] > 0 and sent["date"] > 0
    too_long = requests.post(f"{private_fake.base_url}{private_fake.token}/sendMessage",
                             data={"chat_id": "7", "text": "长" * 4097}, timeout=5)
    assert too_long.status_code == 400 and "too long" in too_long.json()["description"]
    assert private_fake.calls("sendMessage", ok=True, chat_id=7)[0].params["text"] == "你好"


# --- end to end: the session stack's channel ------------------------------------------------------

def deliver(stack, body: Any, secret: Optional[str]) -> requests.Response:
    """POST to the stack's Telegram webhook like Telegram does (JSON body, secret header)."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    data = body if isinstance(body, (bytes, str)) else json.dumps(body, ensure_ascii=False).encode("utf-8")
    return requests.post(f"{stack.url}/webhooks/telegram/webhook", data=data, headers=headers, timeout=10)


@pytest.fixture
def telegram(rasa_stack, fake_telegram):
    class Telegram:
        fake = fake_telegram
        stack = rasa_stack

        def send(self, body: Any, secret: Optional[str] = fake_telegram.webhook_secret) -> requests.Response:
            return deliver(rasa_stack, body, secret)

        def say(self, chat_id: int, text: str) -> None:
            answer = self.send(text_update(chat_id, text))
            assert answer.status_code == 200, answer.text

        def tracker(self, chat_id: int) -> Dict[str, Any]:
            answer = requests.get(f"{rasa_stack.url}/conversations/{quote(f'tg:{chat_id}', safe=':')}/tracker",
                                  params={"token": rasa_stack.api_token}, timeout=10)
            answer.raise_for_status()
            return answer.json()

        def user_events(self, chat_id: int, count: int = 1, timeout: float = 20) -> List[Dict[str, Any]]:
            """The chat's user events once there are `count` (the tracker is saved after the replies went out)."""
            deadline = time.monotonic() + timeout
            while True:
                users = [e for e in self.tracker(chat_id)["events"] if e["event"] == "user"]
                if len(users) >= count or time.monotonic() > deadline:
                    return users
                time.sleep(0.2)

    return Telegram()


def test_health_and_webhook_set_at_startup(telegram):
    assert requests.get(f"{telegram.stack.url}/webhooks/telegram/", timeout=5).json() == {"status": "ok"}
    call = telegram.fake.wait_for("setWebhook", timeout=10)[0]
    assert call.params["url"] == FakeTelegramAPI.WEBHOOK_URL
    assert call.params["secret_token"] == telegram.fake.webhook_secret
    assert set(call.params["allowed_updates"]) == {"message", "callback_query"}


def test_greeting_reaches_the_chat_with_buttons(telegram):
    chat = new_chat()
    telegram.say(chat, "你好")
    reply = telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=90)[0]
    assert GREETING in reply.params["text"]
    titles = [b["text"] for row in reply.params["reply_markup"]["inline_keyboard"] for b in row]
    assert "查订单" in titles and "查物流" in titles
    assert not telegram.fake.calls("sendMessage", chat_id=chat + 1)
    # the tracker knows the channel and the Telegram ids
    user = telegram.user_events(chat)[-1]
    assert user["text"] == "你好" and user["input_channel"] == "telegram"
    assert user["metadata"]["telegram"]["chat_id"] == chat


@pytest.mark.parametrize("command", ["/start", "/start promo_1111"])
def test_start_command_greets(telegram, command):
    chat = new_chat()
    telegram.say(chat, command)
    reply = telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=60)[0]
    assert GREETING in reply.params["text"]


def test_button_press_answers_the_callback_and_continues(telegram):
    chat = new_chat()
    telegram.say(chat, "你好")
    greeting = telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=60)[0]
    keyboard = greeting.params["reply_markup"]["inline_keyboard"]
    button = next(b for row in keyboard for b in row if b["text"] == "查订单")
    press = callback_update(chat, button["callback_data"], keyboard, text=greeting.params["text"])
    assert telegram.send(press).status_code == 200
    answered = telegram.fake.wait_for("answerCallbackQuery", callback_query_id=press["callback_query"]["id"])
    assert len(answered) == 1
    reply = telegram.fake.wait_for("sendMessage", 2, chat_id=chat, timeout=60)[1]
    assert "订单" in reply.params["text"] and GREETING not in reply.params["text"]
    user = telegram.user_events(chat, 2)[-1]
    assert user["parse_data"]["intent"]["name"] == "query_order"


def test_button_of_a_forgotten_key_falls_back_to_its_title(telegram):
    chat = new_chat()
    keyboard = [[{"text": "你好", "callback_data": "k:forgotten-after-restart"}]]
    assert telegram.send(callback_update(chat, "k:forgotten-after-restart", keyboard)).status_code == 200
    reply = telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=60)[0]
    assert GREETING in reply.params["text"]
    assert telegram.fake.calls("answerCallbackQuery")


def test_button_data_not_on_the_message_is_refused(telegram):
    chat = new_chat()
    keyboard = [[{"text": "查订单", "callback_data": "/query_order"}]]
    forged = callback_update(chat, '/inform{"order_id": "202411050005"}', keyboard)
    assert telegram.send(forged).status_code == 200
    reply = telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=30)[0]
    assert reply.params["text"] == EXPIRED_BUTTON_REPLY


def rasa_log(telegram) -> str:
    return (Path(telegram.stack.workdir) / "rasa.log").read_text(errors="replace")


@pytest.mark.parametrize("secret", ["wrong-secret", None, ""])
def test_requests_without_the_right_secret_are_refused(telegram, secret):
    chat = new_chat()
    answer = telegram.send(text_update(chat, "你好"), secret=secret)
    assert answer.status_code == 403
    deadline = time.time() + 10
    kind = "wrong" if secret else "missing"
    while f"rejected a request with a {kind} secret token" not in rasa_log(telegram):
        assert time.time() < deadline, "no log line for the refused request"
        time.sleep(0.2)
    time.sleep(1.5)
    assert not telegram.fake.calls(chat_id=chat)


@pytest.mark.parametrize("body", [b"{broken json", b"", b"[]", b'{"hello": "world"}', b'{"update_id": "12"}',
                                  json.dumps({"update_id": 12, "message": {"text": "no chat"}}).encode()])
def test_what_is_not_an_update_is_a_bad_request(telegram, body):
    answer = telegram.send(body)
    assert answer.status_code == 400


def test_get_on_the_webhook_is_not_a_server_error(telegram):
    answer = requests.get(f"{telegram.stack.url}/webhooks/telegram/webhook", timeout=5)
    assert 400 <= answer.status_code < 500


@pytest.mark.parametrize("content", [
    {"sticker": {"file_id": "CAACAgIAAxkBAAE", "file_unique_id": "AgADxQ", "type": "regular", "width": 512,
                 "height": 512, "is_animated": False, "is_video": False, "emoji": "😊"}},
    {"photo": [{"file_id": "AgACAgUAAxkBAAI", "file_unique_id": "AQADs", "width": 90, "height": 90}],
     "caption": "这个商品坏了"},
    {"voice": {"file_id": "AwACAgUAAxkBAAI", "file_unique_id": "AgADvQ", "duration": 3}},
])
def test_non_text_messages_get_a_polite_text_only_reply(telegram, content):
    chat = new_chat()
    assert telegram.send(tg_update(message=tg_message(chat, **content))).status_code == 200
    reply = telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=30)[0]
    assert reply.params["text"] == NON_TEXT_REPLY and "文字" in reply.params["text"]
    time.sleep(1)
    assert len(telegram.fake.calls("sendMessage", chat_id=chat)) == 1


def test_oversized_message_is_clipped_with_a_notice_then_answered(telegram):
    chat = new_chat()
    text = "你好，我想咨询一下退货的问题。" + "我买的衣服尺码不合适，" * 200
    assert len(text) > MAX_MESSAGE_CHARS
    telegram.say(chat, text)
    replies = telegram.fake.wait_for("sendMessage", 2, chat_id=chat, timeout=60)
    assert replies[0].params["text"] == CLIPPED_NOTICE
    assert replies[1].params["text"] != CLIPPED_NOTICE and replies[1].params["text"].strip()
    user = telegram.user_events(chat)[-1]
    assert user["text"] == text[:MAX_MESSAGE_CHARS]


def test_redelivered_update_is_answered_once(telegram):
    chat = new_chat()
    update = text_update(chat, "你好")
    assert telegram.send(update).status_code == 200
    assert telegram.send(update).status_code == 200
    telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=60)
    time.sleep(2)
    assert len(telegram.fake.calls("sendMessage", chat_id=chat)) == 1


def test_agent_message_with_output_channel_latest_reaches_the_chat(telegram):
    chat = new_chat()
    telegram.say(chat, "你好")
    telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=60)
    agent_text = f"您好，我是人工客服A001，已收到您的问题（会话{chat}），正在为您查询。"
    answer = requests.post(
        f"{telegram.stack.url}/conversations/{quote(f'tg:{chat}', safe=':')}/tracker/events",
        params={"output_channel": "latest", "execute_side_effects": "true", "token": telegram.stack.api_token},
        json=[{"event": "bot", "text": agent_text, "metadata": {"agent": "A001"}}], timeout=20)
    assert answer.status_code == 200, answer.text
    pushed = telegram.fake.wait_for("sendMessage", 2, chat_id=chat, timeout=30)[1]
    assert pushed.params["text"] == agent_text
    assert not telegram.fake.calls("sendMessage", text=agent_text, where=lambda c: c.params["chat_id"] != chat)


def test_messages_of_one_chat_are_answered_in_order(telegram):
    chat = new_chat()
    telegram.say(chat, "你好")
    telegram.say(chat, "/start")
    replies = telegram.fake.wait_for("sendMessage", 2, chat_id=chat, timeout=60)
    assert all(GREETING in r.params["text"] for r in replies[:2])
    users = [e["text"] for e in telegram.user_events(chat, 2)]
    assert users[-2:] == ["你好", "/greet"]


def test_a_failing_send_does_not_stick_the_conversation(telegram):
    chat = new_chat()
    telegram.fake.unreachable_chats.add(chat)
    telegram.say(chat, "你好")
    telegram.fake.wait_for("sendMessage", chat_id=chat, ok=False, timeout=60)
    telegram.fake.unreachable_chats.discard(chat)
    telegram.say(chat, "你好")
    reply = telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=60)[0]
    assert GREETING in reply.params["text"]


def test_webhook_answers_before_the_bot_replies(telegram):
    """Telegram gets its 200 at once; the reply follows through the Bot API."""
    chat = new_chat()
    started = time.monotonic()
    telegram.say(chat, "帮我查一下订单202411010001的情况")
    assert time.monotonic() - started < 5
    telegram.fake.wait_for("sendMessage", chat_id=chat, timeout=60)
