"""The callback channel (kefu.channels.callback) against a real `rasa run`: signed requests in, signed replies
POSTed to the merchant's endpoint, agent messages pushed during a handoff, bad input refused with a 4xx."""
from __future__ import annotations

import json
import uuid

import requests

from kefu.channels.callback import SIGNATURE_HEADER, sign


def post(rasa_stack, receiver, payload, *, secret=None, raw: bytes = None):
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: sign(secret if secret is not None else receiver.secret, body)}
    return requests.post(f"{rasa_stack.url}/webhooks/callback/webhook", data=body, headers=headers, timeout=30)


def test_a_message_is_accepted_at_once_and_the_replies_come_signed(rasa_stack, callback_receiver):
    me = "cb-" + uuid.uuid4().hex[:8]
    response = post(rasa_stack, callback_receiver, {"sender": me, "message": "查一下订单202411010001"})
    assert response.status_code == 202 and response.json() == {"status": "accepted"}
    replies = callback_receiver.wait(me)
    assert all(r["signed"] for r in replies)
    assert "手机号" in replies[0]["message"]["text"]


def test_agent_messages_are_pushed_to_the_callback(rasa_stack, callback_receiver):
    me = "cb-" + uuid.uuid4().hex[:8]
    post(rasa_stack, callback_receiver, {"sender": me, "message": "你好"})
    before = len(callback_receiver.wait(me))
    event = {"event": "bot", "text": "您好，我是人工客服王静", "metadata": {"agent": "A001", "agent_name": "王静"}}
    response = requests.post(f"{rasa_stack.url}/conversations/{me}/tracker/events", json=[event], timeout=30,
                             params={"token": rasa_stack.api_token, "output_channel": "latest",
                                     "execute_side_effects": "true"})
    assert response.status_code == 200
    pushed = callback_receiver.wait(me, before + 1)[-1]
    assert pushed["signed"] and pushed["message"] == {"recipient_id": me, "text": "您好，我是人工客服王静",
                                                      "agent": "A001", "agent_name": "王静"}


def test_forged_and_malformed_requests_get_a_4xx(rasa_stack, callback_receiver):
    me = "cb-" + uuid.uuid4().hex[:8]
    assert post(rasa_stack, callback_receiver, {"sender": me, "message": "你好"}, secret="wrong").status_code == 403
    unsigned = requests.post(f"{rasa_stack.url}/webhooks/callback/webhook", json={"sender": me, "message": "你好"},
                             timeout=30)
    assert unsigned.status_code == 403
    for raw in (b"", b"{not json", b"\xff\xfe", b"[1, 2]", b'{"sender": 5, "message": "hi"}',
                b'{"sender": "a\\u0000b", "message": "hi"}', b'{"sender": "x", "message": ""}',
                json.dumps({"sender": "x" * 500, "message": "hi"}).encode()):
        response = post(rasa_stack, callback_receiver, None, raw=raw)
        assert response.status_code == 400, raw
        assert "error" in response.json()
    assert post(rasa_stack, callback_receiver, None, raw=b"x" * 70_000).status_code == 413
    assert callback_receiver.messages(me) == []  # nothing reached the bot
