"""The WeChat Official Account channel against the real Rasa stack and a local fake WeChat (no internet)."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import List
from urllib.parse import quote

import pytest
import requests

from fakes.wechat_api import (FakeWeChatApi, WeChatPlatform, event_xml, image_xml, new_msg_id, new_openid,
                              parse_reply, signed_params, text_xml)
from kefu.channels.common import CLIPPED_NOTICE, RATE_LIMITED_TEXT
from kefu.channels.wechat import (BUTTONS_HEADER, MAX_BODY_BYTES, UNSUPPORTED_NOTICE, ButtonMemory, WeChatInput,
                                  credentials_from_env, parse_message, WeChatXMLError)

GREETING = "我是小智"          # utter_greet
ASK_ORDER_NO = "请提供您的订单号"  # utter_ask_order_no


@pytest.fixture(scope="module")
def wechat(rasa_stack, fake_wechat) -> WeChatPlatform:
    platform = WeChatPlatform(f"{rasa_stack.url}/webhooks/wechat/webhook", fake_wechat.token)
    rasa_stack.say("wx-warmup", "你好")  # the first message after start loads lazily; keep it out of the 4.5 s
    return platform


def user_texts(rasa_stack, sender: str) -> List[str]:
    """The texts of the user messages Rasa recorded for `sender`.

    The ":" of ``wx:<openid>`` stays unescaped: Rasa 3.6 (Sanic 21.12) does not unquote path parameters,
    so ``wx%3A...`` would name another, empty conversation."""
    answer = requests.get(f"{rasa_stack.url}/conversations/{quote(sender, safe=':')}/tracker",
                          params={"token": rasa_stack.api_token, "include_events": "ALL"}, timeout=30)
    answer.raise_for_status()
    return [e.get("text") for e in answer.json().get("events", []) if e.get("event") == "user"]


# --- URL verification and request checks ------------------------------------------------------------------------


def test_url_verification_echoes_only_with_the_right_signature(wechat):
    good = wechat.verify("echo-8d1f2c")
    assert good.status_code == 200 and good.text == "echo-8d1f2c"
    assert good.headers["Content-Type"].startswith("text/plain")
    wrong = wechat.verify("echo-8d1f2c", token="not-the-token")
    assert wrong.status_code == 403 and "echo-8d1f2c" not in wrong.text
    missing = requests.get(wechat.webhook_url, params={"echostr": "echo-8d1f2c"}, timeout=10)
    assert missing.status_code == 403


def test_messages_without_the_right_signature_are_refused_and_not_processed(wechat, rasa_stack):
    openid = new_openid()
    body = text_xml(openid, "你好")
    assert wechat.post(body, token="not-the-token").status_code == 403
    assert wechat.post(body, params={}).status_code == 403
    tampered = signed_params(wechat.token)
    tampered["nonce"] += "1"
    assert wechat.post(body, params=tampered).status_code == 403
    assert user_texts(rasa_stack, f"wx:{openid}") == []
    assert wechat.post(body).status_code == 200  # the same message, signed right, goes through
    assert user_texts(rasa_stack, f"wx:{openid}") == ["你好"]


def test_malformed_or_incomplete_xml_is_a_400(wechat):
    openid = new_openid()
    assert wechat.post("<xml><ToUserName>gh_kefu</ToUserName><Content>你好").status_code == 400
    assert wechat.post("not xml at all").status_code == 400
    assert wechat.post('{"FromUserName": "x"}').status_code == 400
    assert wechat.post("<html><FromUserName>x</FromUserName></html>").status_code == 400
    without_sender = text_xml(openid, "你好").replace(f"<FromUserName><![CDATA[{openid}]]></FromUserName>", "")
    assert wechat.post(without_sender).status_code == 400
    without_content = text_xml(openid, "你好").replace("<Content><![CDATA[你好]]></Content>", "")
    assert wechat.post(without_content).status_code == 400


def test_doctype_and_entity_payloads_are_rejected(wechat):
    openid = new_openid()
    laughs = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "哈哈哈哈哈哈哈哈">'
              + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi"))
              + f"]><xml><ToUserName>gh_kefu</ToUserName><FromUserName>{openid}</FromUserName>"
              "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&i;</Content><MsgId>1</MsgId></xml>")
    xxe = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           f"<xml><ToUserName>gh_kefu</ToUserName><FromUserName>{openid}</FromUserName><CreateTime>1</CreateTime>"
           "<MsgType>text</MsgType><Content>&x;</Content><MsgId>2</MsgId></xml>")
    for payload in (laughs, xxe):
        answer = wechat.post(payload)
        assert 400 <= answer.status_code < 500, answer.status_code
        assert "root:" not in answer.text and "哈哈" not in answer.text
    with pytest.raises(WeChatXMLError):
        parse_message(xxe.encode())


def test_oversized_bodies_are_refused(wechat):
    body = text_xml(new_openid(), "啊" * (MAX_BODY_BYTES // 3 + 100))
    assert wechat.post(body).status_code == 413


# --- conversations ----------------------------------------------------------------------------------------------


def test_hello_gets_a_passive_greeting_addressed_to_the_user(wechat, fake_wechat):
    openid = new_openid()
    answer = wechat.send_text(openid, "你好")
    assert answer.status_code == 200 and "xml" in answer.headers["Content-Type"]
    reply = parse_reply(answer.text)
    assert reply["ToUserName"] == openid and reply["FromUserName"] == "gh_kefu000001"
    assert reply["MsgType"] == "text" and int(reply["CreateTime"]) > 0
    assert GREETING in reply["Content"]
    assert fake_wechat.sent(openid) == []  # answered in the HTTP response, not through the API


def test_buttons_become_a_numbered_list_and_a_number_sends_the_payload(wechat, rasa_stack):
    openid = new_openid()
    greeting = wechat.reply_text(openid, "你好")
    assert f"{BUTTONS_HEADER}\n1. 查订单\n2. 查物流\n3. 退换货\n4. 转人工" in greeting
    follow_up = wechat.reply_text(openid, "1")
    assert ASK_ORDER_NO in follow_up
    assert user_texts(rasa_stack, f"wx:{openid}") == ["你好", "/query_order"]
    # without buttons shown before, "1" is just text
    stranger = new_openid()
    wechat.send_text(stranger, "1")
    assert user_texts(rasa_stack, f"wx:{stranger}") == ["1"]


def test_subscribe_greets_and_unsubscribe_is_only_acknowledged(wechat, rasa_stack):
    openid = new_openid()
    answer = wechat.send_event(openid, "subscribe")
    reply = parse_reply(answer.text)
    assert reply["ToUserName"] == openid and GREETING in reply["Content"]
    assert user_texts(rasa_stack, f"wx:{openid}") == ["/greet"]
    bye = wechat.send_event(openid, "unsubscribe")
    assert bye.status_code == 200 and bye.text == "success"
    assert user_texts(rasa_stack, f"wx:{openid}") == ["/greet"]


def test_images_get_a_polite_text_only_notice(wechat, rasa_stack):
    openid = new_openid()
    answer = wechat.post(image_xml(openid))
    reply = parse_reply(answer.text)
    assert reply["ToUserName"] == openid and reply["Content"] == UNSUPPORTED_NOTICE
    assert "文字" in reply["Content"]
    assert user_texts(rasa_stack, f"wx:{openid}") == []


def test_too_long_text_is_clipped_with_a_notice_and_still_answered(wechat, rasa_stack):
    openid = new_openid()
    content = wechat.reply_text(openid, "你好" + "呀" * 1500)
    assert content.startswith(CLIPPED_NOTICE)
    assert len(content) > len(CLIPPED_NOTICE) + 5  # the bot's answer follows the notice
    [seen] = user_texts(rasa_stack, f"wx:{openid}")
    assert len(seen) == 1000 and seen.startswith("你好")


def test_a_retried_message_is_processed_once(wechat, rasa_stack):
    openid = new_openid()
    body = text_xml(openid, "你好", msg_id=new_msg_id())
    with ThreadPoolExecutor(3) as pool:  # WeChat's retries can overlap with the first attempt
        answers = list(pool.map(lambda _: wechat.post(body), range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    contents = {parse_reply(a.text)["Content"] if a.text != "success" else "success" for a in answers}
    assert any(GREETING in c for c in contents)
    later = wechat.post(body)
    assert later.status_code == 200 and (later.text == "success" or GREETING in parse_reply(later.text)["Content"])
    assert user_texts(rasa_stack, f"wx:{openid}") == ["你好"]
    # a new message (new MsgId) with the same text is processed again
    wechat.send_text(openid, "你好")
    assert user_texts(rasa_stack, f"wx:{openid}") == ["你好", "你好"]


# --- replies through the customer-service API --------------------------------------------------------------------


async def test_a_slow_reply_is_acknowledged_and_pushed_through_the_customer_service_api(rasa_stack, fake_wechat):
    """A channel instance with a tiny reply_timeout, in this process, before the real bot (via REST)."""
    channel = WeChatInput.from_credentials(fake_wechat.channel_credentials(reply_timeout=0.05))
    openid = new_openid()
    handled: List[str] = []

    async def slow_bot(message):
        handled.append(message.text)
        await asyncio.sleep(0.5)
        # the real bot through REST, under a REST id (REST refuses other channels' ids such as wx:…)
        for answer in await asyncio.to_thread(rasa_stack.say, message.sender_id.replace("wx:", "rest-wx-"), message.text):
            answer.pop("recipient_id", None)
            await message.output_channel.send_response(message.sender_id, answer)

    body = text_xml(openid, "你好", msg_id=new_msg_id()).encode()
    tokens_before = len(fake_wechat.calls("/cgi-bin/token"))
    status, text, _ = await channel.handle_post(signed_params(fake_wechat.token), body, slow_bot)
    assert (status, text) == (200, "success")
    [pushed] = await asyncio.to_thread(fake_wechat.wait_for_messages, openid, 1, 30)
    assert GREETING in pushed and f"{BUTTONS_HEADER}\n1. 查订单" in pushed
    # WeChat's retry of the same message: acknowledged, neither processed nor pushed again
    assert (await channel.handle_post(signed_params(fake_wechat.token), body, slow_bot))[:2] == (200, "success")
    await asyncio.sleep(0.8)
    assert handled == ["你好"] and len(fake_wechat.sent(openid)) == 1
    # the pushed buttons are remembered too: "1" sends /query_order
    fake_wechat.revoke_tokens()  # and an expired access token is refreshed on errcode 40001
    reply_to = text_xml(openid, "1", msg_id=new_msg_id()).encode()
    assert (await channel.handle_post(signed_params(fake_wechat.token), reply_to, slow_bot))[:2] == (200, "success")
    messages = await asyncio.to_thread(fake_wechat.wait_for_messages, openid, 2, 30)
    assert ASK_ORDER_NO in messages[1] and handled[-1] == "/query_order"
    assert len(fake_wechat.calls("/cgi-bin/token")) >= tokens_before + 2
    assert any(c.response.get("errcode") == 40001 for c in fake_wechat.calls("/cgi-bin/message/custom/send"))


async def test_a_user_over_the_rate_limit_is_told_once_and_retries_cost_nothing(fake_wechat):
    channel = WeChatInput.from_credentials(fake_wechat.channel_credentials(sender_limit=2, sender_window=60))
    handled: List[str] = []

    async def echo_bot(message):
        handled.append(message.text)
        await message.output_channel.send_response(message.sender_id, {"text": f"收到：{message.text}"})

    async def post(openid: str, text: str, msg_id: str) -> str:
        status, body, _ = await channel.handle_post(signed_params(fake_wechat.token),
                                                    text_xml(openid, text, msg_id=msg_id).encode(), echo_bot)
        assert status == 200
        return body if body == "success" else parse_reply(body)["Content"]

    openid, first = new_openid(), new_msg_id()
    assert await post(openid, "一", first) == "收到：一"
    assert await post(openid, "一", first) in ("success", "收到：一")  # WeChat's retry: not a new message
    assert await post(openid, "二", new_msg_id()) == "收到：二"
    assert await post(openid, "三", new_msg_id()) == RATE_LIMITED_TEXT
    assert await post(openid, "四", new_msg_id()) == "success"  # told once per window
    assert await post(new_openid(), "别人", new_msg_id()) == "收到：别人"
    assert handled == ["一", "二", "别人"]


async def test_the_output_channel_refuses_other_channels_and_bad_app_secrets(fake_wechat):
    channel = WeChatInput.from_credentials(fake_wechat.channel_credentials())
    before = len(fake_wechat.calls())
    await channel.get_output_channel().send_response("tg:12345", {"text": "不该发出"})
    assert len(fake_wechat.calls()) == before
    broken = WeChatInput.from_credentials(fake_wechat.channel_credentials(app_secret="wrong-secret"))
    openid = new_openid()
    await broken.get_output_channel().send_response(f"wx:{openid}", {"text": "不该发出"})  # logged, not raised
    assert any(c.query.get("secret") == "wrong-secret" and c.response.get("errcode") == 40125
               for c in fake_wechat.calls("/cgi-bin/token"))
    assert fake_wechat.sent(openid) == []


def test_an_agent_message_during_handoff_reaches_the_wechat_user(wechat, rasa_stack, fake_wechat):
    openid = new_openid()
    assert GREETING in wechat.reply_text(openid, "你好")
    assert fake_wechat.sent(openid) == []
    agent_text = "您好，我是人工客服A001，您的问题我来处理。"
    answer = requests.post(
        f"{rasa_stack.url}/conversations/{quote('wx:' + openid, safe=':')}/tracker/events",
        params={"output_channel": "latest", "execute_side_effects": "true", "token": rasa_stack.api_token},
        json=[{"event": "bot", "text": agent_text, "metadata": {"agent": "A001"}}], timeout=30)
    assert answer.status_code == 200, answer.text
    assert fake_wechat.wait_for_messages(openid, 1, 30) == [agent_text]


# --- pieces -----------------------------------------------------------------------------------------------------


def test_credentials_from_env():
    assert credentials_from_env({"WECHAT_APP_ID": "wx1"}) is None
    assert credentials_from_env({"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s"}) == {
        "token": "t", "app_id": "wx1", "app_secret": "s"}
    assert credentials_from_env({"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s",
                                 "WECHAT_API_BASE_URL": "http://127.0.0.1:1"})["api_base_url"] == "http://127.0.0.1:1"
    channel = WeChatInput.from_credentials(credentials_from_env(
        {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s"}))
    assert channel.name() == "wechat" and channel.reply_timeout == 4.5
    assert channel.api.base_url == "https://api.weixin.qq.com"
    with pytest.raises(Exception):
        WeChatInput.from_credentials({"token": "t"})


def test_button_memory_is_bounded_and_expires():
    memory = ButtonMemory(max_users=2, ttl=60)
    memory.remember("a", ["/x", "/y"])
    assert memory.resolve("a", "2") == "/y" and memory.resolve("a", "3") is None and memory.resolve("a", "x") is None
    memory.remember("b", ["/x"])
    memory.remember("c", ["/x"])
    assert memory.resolve("a", "1") is None and memory.resolve("c", "1") == "/x"  # oldest user evicted
    memory.remember("c", [])
    assert memory.resolve("c", "1") is None
    expiring = ButtonMemory(ttl=-1)
    expiring.remember("a", ["/x"])
    assert expiring.resolve("a", "1") is None


def test_event_and_image_xml_parse(fake_wechat):
    fields = parse_message(event_xml("oX", "subscribe").encode())
    assert fields["MsgType"] == "event" and fields["Event"] == "subscribe" and fields["FromUserName"] == "oX"
    assert parse_message(image_xml("oX").encode())["MsgType"] == "image"
    assert isinstance(fake_wechat, FakeWeChatApi)
