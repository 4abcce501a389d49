"""Human handoff end to end, in a real browser (Playwright + Debian's Chromium, headless).

A customer chats in the web widget (socket.io channel of a real `rasa run`), proves an order, asks for a human;
agent A001 logs into the desk (its own process), sees the earlier bot turns and the order number, replies;
the customer sees the reply in the widget; the agent closes; the customer is asked for a rating and rates.
Then the desk process is killed during a handoff and restarted: no message is lost.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select, update

from kefu.db import session_scope
from kefu.models import DeskAgent, Handoff, Rating
from kefu.stack import DeskServer

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "kefu123"
# set to a folder (e.g. docs/) to keep the desk screenshot there
SCREENSHOT_DIR = os.environ.get("KEFU_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
def desk(rasa_stack, demo_db_url, tmp_path_factory):
    with session_scope(demo_db_url) as s:  # handoffs left waiting by other tests' conversations are not ours
        s.execute(update(Handoff).where(Handoff.status != "closed").values(status="closed"))
    server = DeskServer(tmp_path_factory.mktemp("desk"), demo_db_url, rasa_stack.url, rasa_stack.api_token,
                        widget_server=rasa_stack.url).start()
    yield server
    server.stop()
    with session_scope(demo_db_url) as s:  # later tests expect nobody online
        s.execute(update(DeskAgent).values(online=0))


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is required: `make system-packages` installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def agent_page(browser, desk: DeskServer, agent_id: str) -> Page:
    page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(desk.url)
    page.fill("#login-id", agent_id)
    page.fill("#login-pw", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#desk-view")).to_be_visible()
    page.check("#online-toggle")
    expect(page.locator("#online-label")).to_contain_text("在线")
    return page


def customer_page(browser, desk: DeskServer) -> Page:
    page = browser.new_page(viewport={"width": 1000, "height": 800}, locale="zh-CN")
    page.goto(f"{desk.url}/chat")
    # the widget greets on its first connection
    expect(page.locator("#kefu-widget .msg.bot").first).to_be_visible(timeout=30_000)
    return page


def say(page: Page, text: str) -> None:
    count = page.locator("#kefu-widget .msg.user").count()
    page.fill("#kefu-widget textarea", text)
    page.press("#kefu-widget textarea", "Enter")
    expect(page.locator("#kefu-widget .msg.user")).to_have_count(count + 1)


def last_bot(page: Page):
    return page.locator("#kefu-widget .msg.bot, #kefu-widget .msg.agent").last


def widget_session(page: Page) -> str:
    return "web:" + page.evaluate(
        "() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.startsWith('kefu_widget:'))))"
        ".session_id")


def test_customer_to_agent_and_back_in_a_browser(desk, browser, rasa_stack, demo_db_url, tmp_path):
    agent = agent_page(browser, desk, "A001")
    customer = customer_page(browser, desk)

    say(customer, "帮我查一下订单202411010001")
    expect(last_bot(customer)).to_contain_text("手机号", timeout=20_000)
    say(customer, "13800138000")
    expect(customer.locator("#kefu-widget .log")).to_contain_text("已签收", timeout=20_000)
    say(customer, "转人工")
    expect(customer.locator("#kefu-widget .log")).to_contain_text("人工客服", timeout=20_000)
    conversation = widget_session(customer)

    # the desk routes the chat to A001 (订单物流, online, free) within about a second
    chat = agent.locator("#mine-list li").filter(has_text=conversation[:18])
    expect(chat).to_be_visible(timeout=10_000)
    chat.click()
    transcript = agent.locator("#transcript")
    expect(transcript).to_contain_text("帮我查一下订单202411010001", timeout=15_000)
    expect(transcript).to_contain_text("已签收")  # the bot's earlier answer
    expect(transcript).to_contain_text("socketio")  # the channel of each customer message
    agent.locator("details:has(#slots) summary").click()
    expect(agent.locator("#slots")).to_contain_text("202411010001")
    expect(agent.locator("#profile")).to_contain_text("张伟")
    expect(agent.locator("#profile")).to_contain_text("138****8000")
    expect(agent.locator("#orders")).to_contain_text("202411010001")

    # while the agent owns the chat the bot is silent, and the customer's words reach the desk
    bots_before = customer.locator("#kefu-widget .msg.bot").count()
    say(customer, "快递员说放驿站了但我没找到")
    expect(transcript).to_contain_text("快递员说放驿站了但我没找到", timeout=10_000)
    assert customer.locator("#kefu-widget .msg.bot").count() == bots_before

    # the ticket form is pre-filled from the conversation
    agent.locator("details:has(#ticket-form) summary").click()
    expect(agent.locator("#ticket-desc")).to_have_value(re.compile("202411010001"))
    shot = Path(SCREENSHOT_DIR or tmp_path) / "desk-conversation.png"
    agent.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000

    agent.fill("#reply-text", "您好，我是客服王静，已联系驿站为您查找包裹。")
    agent.click("#reply-form button[type=submit]")
    reply = customer.locator("#kefu-widget .msg.agent").last
    expect(reply).to_contain_text("已联系驿站为您查找包裹", timeout=10_000)
    expect(reply).to_contain_text("人工客服 王静")
    expect(transcript).to_contain_text("客服 A001")

    # close: the bot resumes and asks for a rating; the customer rates with a button
    agent.locator("details:has(#close-form) summary").click()
    agent.click("#close-form button[type=submit]")
    expect(agent.locator("#action-msg")).to_contain_text("已邀请顾客评价")
    expect(customer.locator("#kefu-widget .log")).to_contain_text("请为本次服务打分", timeout=10_000)
    customer.locator("#kefu-widget .replies button", has_text="5分").last.click()
    expect(customer.locator("#kefu-widget .log")).to_contain_text("感谢您的评价", timeout=20_000)

    with session_scope(demo_db_url) as s:
        handoff = s.execute(select(Handoff).where(Handoff.conversation_id == conversation)).scalar_one()
        assert (handoff.status, handoff.assigned_agent, handoff.skill_group) == ("closed", "A001", "订单物流")
        rating = s.execute(select(Rating).where(Rating.conversation_id == conversation)).scalar_one()
        assert (rating.score, rating.handoff_id) == (5, handoff.id)
    tracker = requests.get(f"{rasa_stack.url}/conversations/{conversation}/tracker",
                           params={"token": rasa_stack.api_token}, timeout=10).json()
    agent_events = [e for e in tracker["events"] if e["event"] == "bot" and (e.get("metadata") or {}).get("agent")]
    assert [e["metadata"]["agent"] for e in agent_events] == ["A001"]
    user_texts = [e["text"] for e in tracker["events"] if e["event"] == "user"]
    assert "快递员说放驿站了但我没找到" in user_texts  # stored although the bot did not answer


def test_reload_keeps_the_conversation(desk, browser):
    page = customer_page(browser, desk)
    say(page, "你们是机器人吗")
    expect(page.locator("#kefu-widget .msg.bot")).to_have_count(2, timeout=20_000)
    before = widget_session(page)
    page.reload()
    expect(page.locator("#kefu-widget .msg.user")).to_have_count(2)  # history restored from the browser
    assert widget_session(page) == before
    say(page, "查订单")
    expect(last_bot(page)).to_contain_text("订单号", timeout=20_000)


def rest(rasa_stack, sender: str, text: str) -> str:
    return rasa_stack.text(sender, text)


def wait_paused(rasa_stack, sender: str, timeout: float = 10) -> None:
    """The desk pauses the bot right after assigning the chat."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        tracker = requests.get(f"{rasa_stack.url}/conversations/{sender}/tracker",
                               params={"token": rasa_stack.api_token, "include_events": "NONE"}, timeout=10).json()
        if tracker.get("paused"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{sender} was not paused")


def test_restarting_the_desk_during_a_handoff_loses_nothing(desk, browser, rasa_stack, demo_db_url):
    sender = f"restart-{time.time_ns()}"
    rest(rasa_stack, sender, "查一下订单202411150002")
    rest(rasa_stack, sender, "13800138000")
    agent = agent_page(browser, desk, "A001")
    assert "人工客服" in rest(rasa_stack, sender, "转人工")
    chat = agent.locator("#mine-list li").filter(has_text=sender[:18])
    expect(chat).to_be_visible(timeout=10_000)
    wait_paused(rasa_stack, sender)

    desk.kill()
    # the customer keeps writing while the desk is down: the bot stays paused and Rasa stores every word
    for text in ("还在吗", "我急着用，能不能加急发货"):
        assert rest(rasa_stack, sender, text) == ""
    desk.start()

    agent = agent_page(browser, desk, "A001")
    agent.locator("#mine-list li").filter(has_text=sender[:18]).click()
    transcript = agent.locator("#transcript")
    expect(transcript).to_contain_text("转人工", timeout=15_000)
    for text in ("查一下订单202411150002", "转人工", "还在吗", "我急着用，能不能加急发货"):
        expect(transcript).to_contain_text(text)
    agent.fill("#reply-text", "已为您催促仓库加急发货。")
    agent.click("#reply-form button[type=submit]")
    expect(transcript).to_contain_text("已为您催促仓库加急发货")
    with session_scope(demo_db_url) as s:
        handoff = s.execute(select(Handoff).where(Handoff.conversation_id == sender)).scalar_one()
        assert handoff.status == "assigned" and handoff.assigned_agent == "A001"
