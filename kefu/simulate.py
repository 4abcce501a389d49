"""`kefu simulate`: drive realistic Chinese customer conversations through the running system.

Customers talk to Rasa's REST webhook (``--rasa-url``); the demo agents work in the agent desk
(``--desk-url``): they log in (password ``KEFU_DEMO_AGENT_PASSWORD`` or ``kefu123``), go online, reply to the
chats they are given, open tickets, change ticket status, close chats; customers then rate. Everything goes
through the public HTTP APIs, so the business tables, Rasa's tracker / event broker, the analytics and the
dashboard fill exactly as with real traffic.

- **Mix** (quota sampling, so even a small run has each kind in proportion): order queries with the phone as
  proof, logistics (order number or tracking number), returns / refunds, ticket progress, FAQ questions (the
  paraphrases of the knowledge base, ``data/kb/*.yml``), chitchat, unclear messages, complaints, "转人工",
  wrong phone numbers (three failures go to a human); every handoff ends with a rating (or none, as real
  customers do), a low rating goes to a human again.
- **Demo data** comes from the business database (``--database-url`` / ``DATABASE_URL``): orders, their
  customers' phones and tracking numbers, the desk agents. The showcase customers used by the docs and tests
  (:data:`kefu.demo_data.SHOWCASE_PHONES`) are left alone unless the database has nobody else.
- **Senders** are ``sim-<run id>-<n>`` (a new run id per run: Rasa keeps a tracker per sender, so a second
  run must not continue the first one's conversations).
- **Tickets**: an agent opens one for some known customers (from the desk's pre-filled draft); complaints of
  proven customers get one from the bot. Some are resolved during the chat, some later by the supervisor
  (the customer is then asked for a rating), some only set in progress.
- **Robust**: a failed request (connection error, timeout, unexpected status) is counted and reported, and
  ends only its conversation; 429 answers are retried after ``Retry-After``. At the end the supervisor closes
  the run's chats that are still open and the agents get their earlier online state back.

Exit status 0 when no request failed, 1 otherwise, 2 when Rasa cannot be reached at all.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import aiohttp

from kefu.db import PROJECT_ROOT

logger = logging.getLogger(__name__)

DEFAULT_RASA_URL = "http://127.0.0.1:5005"
DEFAULT_DESK_URL = "http://127.0.0.1:5006"
PASSWORD_ENV, DEFAULT_PASSWORD = "KEFU_DEMO_AGENT_PASSWORD", "kefu123"
REQUEST_TIMEOUT = 90.0
POLL_INTERVAL = 0.5

# ------------------------------------------------------------------------------------------------
# what customers and agents say

GREETINGS = ["你好", "在吗", "您好，请问在吗", "hi", "亲，在吗", "客服你好", "有人吗"]
ORDER_QUERY = ["帮我查一下订单{o}", "订单{o}现在什么状态了", "查下我的订单 {o}", "我的订单{o}到哪一步了",
               "{o} 这个订单帮我看看", "麻烦看下订单{o}的情况"]
ORDER_FIRST = ["我想查一下我的订单", "帮我查个订单", "查订单", "我买的东西怎么样了"]
LOGISTICS = ["我的快递到哪了", "怎么还没发货啊", "物流好几天没更新了", "帮我催一下快递", "东西什么时候能送到"]
LOGISTICS_ORDER = ["订单{o}的快递到哪了", "{o}怎么还没到", "帮我查下订单{o}的物流"]
TRACKING = ["快递单号{t}到哪了", "帮我查一下{t}", "{t} 这个单号怎么不动了"]
AFTERSALES = ["订单{o}我想退货", "我要退货", "这个东西不想要了，订单{o}能退吗", "订单{o}想换个尺码", "退款怎么还没到账",
              "我的退款到哪一步了", "订单{o}的东西坏了，能修吗"]
TICKET_QUERY = ["我之前反映的问题处理得怎么样了", "帮我查一下工单进度", "上次投诉的事有结果了吗"]
CHITCHAT = ["你叫什么名字呀", "今天天气真不错", "你是机器人吗", "哈哈你真逗", "最近好忙啊", "你们周末也上班吗",
            "你吃饭了吗"]
UNCLEAR = ["那个东西怎么弄", "嗯嗯", "就是上次那个事", "？？？", "asdfjkl", "这个咋整啊", "你懂我意思吧", "唉",
           "那个啥来着", "还是不行"]
COMPLAINT = ["我要投诉，快递员态度太差了", "你们服务太差了，我要投诉", "东西坏了一直没人管，我要投诉",
             "太过分了，必须给我个说法", "买到的东西和描述严重不符，我要投诉"]
HUMAN = ["转人工", "人工客服", "我要找人工", "帮我转人工客服", "转人工，谢谢"]
FOLLOW_UP = ["那物流到哪了", "什么时候能到货", "能帮我催一下吗", "好的，那退货呢"]
DURING_CHAT = ["好的，麻烦快一点", "嗯嗯，谢谢", "在吗？", "好的我等一下", "比较着急，麻烦尽快", "好的"]
DECLINE = ["算了，先不用了", "不用了", "算了"]
THANKS_BYE = ["好的谢谢", "谢谢，再见", "拜拜", "没有了，谢谢", "谢谢啦"]
WRONG_PHONES = ["13000000000", "1234", "18812345678", "9999"]

AGENT_OPENERS = ["您好，我是人工客服{name}，已经看到您之前的对话了，马上为您处理。",
                 "您好，{name}为您服务，您的问题我看到了，请稍等，我帮您查一下。",
                 "您好，让您久等了，我是{name}，这就为您处理。"]
AGENT_FOLLOW_UPS = ["已经帮您核实了，这边为您登记处理，请您放心。", "好的，我这边已经记录，稍后会有专人跟进。",
                    "非常抱歉给您带来不便，我们会尽快处理。", "已经为您加急了，有进展会第一时间通知您。"]
CLOSE_NOTES = ["已解答", "已登记工单跟进", "顾客问题已处理", "已安抚顾客并登记"]
IN_PROGRESS_NOTES = ["已转交相关部门处理", "已联系快递公司核实", "已提交售后审核"]
RESOLVE_NOTES = ["已联系快递加急派送", "已为您补发", "退款已原路退回，请注意查收", "已为您处理完成"]
RATING_TEXTS: Dict[int, List[str]] = {
    5: ['/rate_service{"rating": "5"}', "5分", "非常满意", "5分 非常满意"],
    4: ['/rate_service{"rating": "4"}', "4分", "满意，4分"],
    3: ['/rate_service{"rating": "3"}', "3分", "一般般吧，3分"],
    2: ['/rate_service{"rating": "2"}', "2分，不满意"],
    1: ['/rate_service{"rating": "1"}', "1分，非常不满意"],
}
RATING_WEIGHTS = {5: 45, 4: 25, 3: 13, 2: 5, 1: 3, 0: 9}  # 0: does not rate

# what the bot's replies mean (texts of domain/responses.yml)
HANDOFF_RE = re.compile(r"转接人工客服|人工客服暂时都不在线|人工客服正在为您处理")
ASK_PHONE_RE = re.compile(r"预留的手机号|手机号格式不对")
ASK_ORDER_RE = re.compile(r"提供您的订单号|重新提供订单号|订单号格式好像不对")
COMPLAINT_TICKET_RE = re.compile(r"投诉工单\s*([A-Za-z0-9]+)")
MESSAGE_TICKET_RE = re.compile(r"留言，工单号\s*([A-Za-z0-9]+)")
APOLOGY_RE = re.compile(r"系统开小差|系统刚刚开了小差|系统暂时繁忙")
CONFIRM_RE = re.compile(r"确认")

SCENARIO_WEIGHTS: Dict[str, int] = {
    "faq": 20, "order": 15, "human": 15, "logistics": 13, "aftersales": 9, "complaint": 7, "chitchat": 6,
    "unclear": 6, "ticket_query": 6, "wrong_phone": 3,
}


# ------------------------------------------------------------------------------------------------
# data and counters

@dataclass(frozen=True)
class DemoOrder:
    order_no: str
    phone: str  # the customer's phone (proves the order)
    tracking_nos: Tuple[str, ...] = ()


@dataclass
class SimData:
    orders: List[DemoOrder]
    faq: List[str]
    agents: List[Tuple[str, str]]  # (agent id, role) of desk_agents


def load_data(database_url: Optional[str], kb_dir: Path) -> SimData:
    """Orders with their customers' phones and tracking numbers, the desk agents, the KB's questions."""
    from sqlalchemy import select

    from kefu.db import session_scope
    from kefu.demo_data import SHOWCASE_PHONES
    from kefu.kb.entries import load_dir
    from kefu.models import Customer, DeskAgent, Order, Shipment

    with session_scope(database_url) as session:
        rows = session.execute(select(Order.id, Order.order_no, Customer.phone).join(Customer)
                               .where(Customer.level != "visitor").order_by(Order.id)).all()
        tracking: Dict[int, List[str]] = {}
        for order_id, tracking_no in session.execute(select(Shipment.order_id, Shipment.tracking_no)
                                                     .order_by(Shipment.id)).all():
            tracking.setdefault(order_id, []).append(tracking_no)
        agents = [(a.agent_id, a.role) for a in session.execute(select(DeskAgent).order_by(DeskAgent.agent_id))
                  .scalars()]
    orders = [DemoOrder(no, phone, tuple(tracking.get(oid, ()))) for oid, no, phone in rows]
    others = [o for o in orders if o.phone not in SHOWCASE_PHONES]
    faq: List[str] = []
    try:
        for entry in load_dir(kb_dir):
            faq += [entry.question, *entry.paraphrases]
    except Exception as error:  # noqa: BLE001 - a broken KB only removes FAQ questions from the mix
        logger.warning("simulate: knowledge base %s not read: %s", kb_dir, error)
    return SimData(orders=others or orders, faq=faq, agents=agents)


@dataclass
class Stats:
    conversations: int = 0
    messages: int = 0
    handed_off: int = 0  # conversations with at least one handoff
    handoffs: int = 0  # handoff episodes (a low rating starts another one)
    assigned: int = 0
    agent_replies: int = 0
    chats_closed: int = 0
    left_messages: int = 0
    rated: int = 0  # conversations with at least one rating given
    ratings_given: int = 0
    desk_tickets: int = 0
    bot_tickets: int = 0  # complaint tickets opened by the bot
    status_changes: int = 0
    tickets_resolved: int = 0
    rating_requests: int = 0
    bot_apologies: int = 0
    errors: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    scenarios: Counter = field(default_factory=Counter)

    def error(self, what: str) -> None:
        self.errors += 1
        self.error_kinds[what] += 1


class EndConversation(Exception):
    """The conversation is over (a handoff was handled, or a request failed)."""


# ------------------------------------------------------------------------------------------------
# HTTP

async def request(session: aiohttp.ClientSession, stats: Stats, method: str, url: str, *, what: str,
                  json: Any = None, headers: Optional[Dict[str, str]] = None,
                  ok: Sequence[int] = (200, 201), quiet: Sequence[int] = ()) -> Tuple[Optional[int], Any]:
    """(status, JSON body) of a request; failures are counted in `stats` (statuses in `quiet` are returned
    without counting) and give (status or None, None). 429 is retried after Retry-After."""
    for _ in range(5):
        try:
            async with session.request(method, url, json=json, headers=headers) as response:
                if response.status == 429:
                    await asyncio.sleep(min(10.0, float(response.headers.get("Retry-After") or 1)))
                    continue
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                if response.status in ok:
                    return response.status, body
                if response.status not in quiet:
                    stats.error(f"{what}: HTTP {response.status}")
                    logger.warning("simulate: %s %s -> %s %s", method, url, response.status, str(body)[:200])
                return response.status, None
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            stats.error(f"{what}: {type(error).__name__}")
            logger.warning("simulate: %s %s failed: %r", method, url, error)
            return None, None
    stats.error(f"{what}: rate limited")
    return 429, None


class AgentClient:
    """One desk login (its own cookie jar and CSRF token)."""

    def __init__(self, desk_url: str, agent_id: str, role: str, stats: Stats):
        self.url, self.agent_id, self.role, self.stats = desk_url.rstrip("/"), agent_id, role, stats
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        self.csrf = ""
        self.name = agent_id
        self.was_online = False

    async def call(self, method: str, path: str, body: Any = None, *, what: str,
                   quiet: Sequence[int] = ()) -> Tuple[Optional[int], Any]:
        headers = {"X-CSRF-Token": self.csrf} if method != "GET" else None
        return await request(self.session, self.stats, method, self.url + path, json=body, headers=headers,
                             what=what, quiet=quiet)

    async def login(self, password: str) -> bool:
        status, body = await self.call("POST", "/api/login", {"agent_id": self.agent_id, "password": password},
                                       what="desk login")
        if not body:
            return False
        self.csrf = body.get("csrf", "")
        _, me = await self.call("GET", "/api/me", what="desk me")
        if me:
            self.name, self.was_online = me.get("name") or self.agent_id, bool(me.get("online"))
        return True

    async def close(self) -> None:
        await self.session.close()


class Desk:
    """The demo agents working in the desk, and who got which chat (from the queue the desk shows them)."""

    def __init__(self, url: str, stats: Stats, handoff_timeout: float):
        self.url, self.stats, self.handoff_timeout = url, stats, handoff_timeout
        self.agents: Dict[str, AgentClient] = {}
        self.supervisor: Optional[AgentClient] = None
        self.assigned: Dict[str, List[Tuple[int, str]]] = {}  # conversation id -> [(handoff id, agent id)]
        self._poller: Optional[asyncio.Task] = None

    async def start(self, agents: Sequence[Tuple[str, str]], password: str) -> bool:
        for agent_id, role in agents:
            client = AgentClient(self.url, agent_id, role, self.stats)
            if not await client.login(password):
                await client.close()
                continue
            if role == "supervisor":
                if self.supervisor is None:
                    self.supervisor = client  # stays offline: closes leftovers, resolves tickets later
                else:
                    await client.close()
                continue
            status, _ = await client.call("POST", "/api/status", {"online": True}, what="desk go online")
            if status == 200:
                self.agents[agent_id] = client
            else:
                await client.close()
        if not self.agents:
            return False
        self._poller = asyncio.create_task(self._poll())
        return True

    async def _poll(self) -> None:
        while True:
            try:
                sources = [self.supervisor] if self.supervisor else list(self.agents.values())
                found: Dict[str, List[Tuple[int, str]]] = {}
                for client in sources:
                    _, queue = await client.call("GET", "/api/queue", what="desk queue")
                    for chat in (queue or {}).get("assigned", []) + (queue or {}).get("mine", []):
                        entry = (chat["handoff_id"], chat.get("assigned_agent") or client.agent_id)
                        if entry not in found.setdefault(chat["conversation_id"], []):
                            found[chat["conversation_id"]].append(entry)
                self.assigned = found
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - an odd answer must not stop the polling
                logger.exception("simulate: reading the desk queue failed")
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_assigned(self, conversation_id: str, handled: set) -> Optional[Tuple[int, str]]:
        """The (handoff id, agent id) of the conversation's chat once an agent has it; None after the timeout."""
        deadline = time.monotonic() + self.handoff_timeout
        while time.monotonic() < deadline:
            for handoff_id, agent_id in self.assigned.get(conversation_id, []):
                if handoff_id not in handled:
                    return handoff_id, agent_id
            await asyncio.sleep(POLL_INTERVAL / 2)
        return None

    async def finish(self, prefix: str) -> int:
        """Close the run's chats that are still open; agents back to their earlier online state; log out."""
        if self._poller is not None:
            self._poller.cancel()
        closed = 0
        if self.supervisor is not None:
            _, queue = await self.supervisor.call("GET", "/api/queue", what="desk queue")
            for chat in (queue or {}).get("waiting", []) + (queue or {}).get("assigned", []):
                if chat["conversation_id"].startswith(prefix):
                    status, _ = await self.supervisor.call(
                        "POST", f"/api/conversations/{chat['handoff_id']}/close", {"note": "模拟结束"},
                        what="desk close leftover", quiet=(409,))
                    closed += status == 200
        else:
            for client in self.agents.values():
                _, queue = await client.call("GET", "/api/queue", what="desk queue")
                for chat in (queue or {}).get("mine", []):
                    if chat["conversation_id"].startswith(prefix):
                        status, _ = await client.call("POST", f"/api/conversations/{chat['handoff_id']}/close",
                                                      {"note": "模拟结束"}, what="desk close leftover", quiet=(409,))
                        closed += status == 200
        for client in list(self.agents.values()) + ([self.supervisor] if self.supervisor else []):
            if client.role != "supervisor" and not client.was_online:
                await client.call("POST", "/api/status", {"online": False}, what="desk go offline")
            await client.call("POST", "/api/logout", what="desk logout", quiet=(401,))
            await client.close()
        return closed


# ------------------------------------------------------------------------------------------------
# one conversation

class Conversation:
    def __init__(self, sim: "Simulation", sender: str, rng: random.Random):
        self.sim, self.sender, self.rng = sim, sender, rng
        self.stats = sim.stats
        self.proved = False
        self.handled: set = set()
        self.was_handed = False
        self.was_rated = False

    # -- talking to the bot

    async def say(self, text: str) -> str:
        """Send one message; the bot's answer as text (button titles left out)."""
        await asyncio.sleep(self.rng.uniform(0, self.sim.think_time))
        status, body = await request(self.sim.rasa_session, self.stats, "POST", self.sim.webhook,
                                     json={"sender": self.sender, "message": text}, what="rasa webhook")
        self.stats.messages += 1
        if status != 200 or not isinstance(body, list):
            raise EndConversation()
        reply = "\n".join(str(m.get("text") or "") for m in body if isinstance(m, dict))
        if APOLOGY_RE.search(reply):
            self.stats.bot_apologies += 1
        return reply

    async def ask(self, text: str) -> str:
        """Send a message; when the bot hands over, play the human part and end the conversation."""
        reply = await self.say(text)
        if HANDOFF_RE.search(reply):
            await self.with_human(reply)
            raise EndConversation()
        return reply

    def pick(self, options: Sequence[str], **values: str) -> str:
        return self.rng.choice(options).format(**values)

    def order(self, with_tracking: bool = False) -> DemoOrder:
        orders = self.sim.data.orders
        if with_tracking:
            orders = [o for o in orders if o.tracking_nos] or orders
        return self.rng.choice(orders)

    def phone_answer(self, order: DemoOrder) -> str:
        last4 = order.phone[-4:]
        return self.rng.choice([order.phone, order.phone, last4, f"手机尾号{last4}", f"我的手机号是{order.phone}"])

    async def prove(self, order: DemoOrder, reply: str) -> str:
        """Answer the bot's questions for the order number and the phone."""
        for _ in range(3):
            if ASK_PHONE_RE.search(reply):
                reply = await self.ask(self.phone_answer(order))
                self.proved = self.proved or not (ASK_PHONE_RE.search(reply) or "对不上" in reply)
            elif ASK_ORDER_RE.search(reply):
                reply = await self.ask(order.order_no)
            else:
                break
        return reply

    async def maybe_greet(self, chance: float = 0.35) -> None:
        if self.rng.random() < chance:
            await self.ask(self.pick(GREETINGS))

    async def goodbye(self, chance: float = 0.6) -> None:
        if self.rng.random() < chance:
            await self.ask(self.pick(THANKS_BYE))

    # -- scenarios

    async def faq(self) -> None:
        await self.maybe_greet()
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            await self.ask(self.rng.choice(self.sim.data.faq) if self.sim.data.faq else self.pick(CHITCHAT))
        await self.goodbye()

    async def order_query(self) -> None:
        await self.maybe_greet()
        order = self.order()
        if self.rng.random() < 0.75:
            reply = await self.ask(self.pick(ORDER_QUERY, o=order.order_no))
        else:
            reply = await self.ask(self.pick(ORDER_FIRST))
        await self.prove(order, reply)
        if self.rng.random() < 0.3:
            await self.prove(order, await self.ask(self.pick(FOLLOW_UP)))
        await self.goodbye()

    async def logistics(self) -> None:
        order = self.order(with_tracking=True)
        choice = self.rng.random()
        if choice < 0.35 and order.tracking_nos:
            reply = await self.ask(self.pick(TRACKING, t=self.rng.choice(order.tracking_nos)))
        elif choice < 0.7:
            reply = await self.ask(self.pick(LOGISTICS_ORDER, o=order.order_no))
        else:
            reply = await self.ask(self.pick(LOGISTICS))
        await self.prove(order, reply)
        await self.goodbye()

    async def aftersales(self) -> None:
        order = self.order()
        reply = await self.prove(order, await self.ask(self.pick(AFTERSALES, o=order.order_no)))
        if CONFIRM_RE.search(reply):
            await self.ask("确认" if self.rng.random() < 0.3 else self.pick(DECLINE))
        await self.goodbye()

    async def ticket_query(self) -> None:
        order = self.order()
        await self.prove(order, await self.ask(self.pick(TICKET_QUERY)))
        await self.goodbye()

    async def chitchat(self) -> None:
        await self.ask(self.pick(GREETINGS))
        for _ in range(self.rng.choice((1, 2))):
            await self.ask(self.pick(CHITCHAT))
        await self.goodbye(0.8)

    async def unclear(self) -> None:
        for text in self.rng.sample(UNCLEAR, 3):
            await self.ask(text)  # two unclear messages in a row usually go to a human
        await self.goodbye()

    async def complaint(self) -> None:
        order = self.order()
        await self.prove(order, await self.ask(self.pick(ORDER_QUERY, o=order.order_no)))
        await self.ask(self.pick(COMPLAINT))
        await self.ask(self.pick(HUMAN))  # NLU missed the complaint: ask for a human outright

    async def human(self) -> None:
        await self.maybe_greet(0.2)
        if self.rng.random() < 0.65:
            order = self.order()
            await self.prove(order, await self.ask(self.pick(ORDER_QUERY + LOGISTICS_ORDER, o=order.order_no)))
        elif self.sim.data.faq:
            await self.ask(self.rng.choice(self.sim.data.faq))
        await self.ask(self.pick(HUMAN))
        await self.ask(self.pick(HUMAN))

    async def wrong_phone(self) -> None:
        order = self.order()
        reply = await self.ask(self.pick(ORDER_QUERY, o=order.order_no))
        for _ in range(6):  # three failed proofs go to a human
            if ASK_PHONE_RE.search(reply):
                reply = await self.ask(self.rng.choice(WRONG_PHONES))
            else:
                reply = await self.ask(order.order_no)
        await self.goodbye()

    # -- with a human

    async def with_human(self, reply: str, depth: int = 0) -> None:
        stats, desk = self.stats, self.sim.desk
        stats.handoffs += 1
        if not self.was_handed:
            self.was_handed = True
            stats.handed_off += 1
        ticket_no: Optional[str] = None
        match = COMPLAINT_TICKET_RE.search(reply)
        if match:
            ticket_no = match.group(1)
            stats.bot_tickets += 1
        found = await desk.wait_assigned(self.sender, self.handled) if desk else None
        agent = desk.agents.get(found[1]) if desk and found else None
        if found is None or agent is None:  # nobody took the chat (in time): leave a message or give up
            if self.proved and self.rng.random() < 0.7:
                if MESSAGE_TICKET_RE.search(await self.say("我要留言")):
                    stats.left_messages += 1
            return
        handoff_id = found[0]
        self.handled.add(handoff_id)
        stats.assigned += 1

        _, view = await agent.call("GET", f"/api/conversations/{handoff_id}", what="desk conversation")
        view = view or {}
        suggestions = view.get("suggestions") or []
        opener = self.pick(AGENT_OPENERS, name=agent.name)
        if suggestions and self.rng.random() < 0.5:
            opener = suggestions[0]["text"]
        if await self.agent_reply(agent, handoff_id, opener):
            await self.say(self.pick(DURING_CHAT))  # the bot is paused: no answer
            await self.agent_reply(agent, handoff_id, self.pick(AGENT_FOLLOW_UPS))

        if ticket_no is None and view.get("customer") and self.rng.random() < 0.5:
            draft = view.get("ticket_draft") or {}
            status, ticket = await agent.call("POST", f"/api/conversations/{handoff_id}/ticket", {
                "subject": draft.get("subject") or "顾客问题跟进", "description": draft.get("description") or "",
                "category": draft.get("category") or "通用", "priority": draft.get("priority") or "normal",
                "order_no": draft.get("order_no")}, what="desk ticket")
            if ticket:
                ticket_no = ticket["ticket_no"]
                stats.desk_tickets += 1
        plan = self.rng.choices(("now", "later", "open"), weights=(35, 40, 25))[0] if ticket_no else None
        if plan in ("now", "open") and (plan == "open" or self.rng.random() < 0.5):
            await self.set_ticket(agent, ticket_no, "in_progress", self.pick(IN_PROGRESS_NOTES))
        if plan == "now":
            await self.set_ticket(agent, ticket_no, "resolved", self.pick(RESOLVE_NOTES))

        status, _ = await agent.call("POST", f"/api/conversations/{handoff_id}/close",
                                     {"note": self.pick(CLOSE_NOTES)}, what="desk close")
        if status != 200:
            return
        stats.chats_closed += 1
        await self.rate(depth)
        if plan == "later" and desk.supervisor is not None:
            result = await self.set_ticket(desk.supervisor, ticket_no, "resolved", self.pick(RESOLVE_NOTES))
            if result and result.get("rating") == "requested":
                stats.rating_requests += 1
                await self.rate(depth + 1)

    async def agent_reply(self, agent: AgentClient, handoff_id: int, text: str) -> bool:
        status, _ = await agent.call("POST", f"/api/conversations/{handoff_id}/reply", {"text": text},
                                     what="desk reply")
        self.stats.agent_replies += status == 200
        return status == 200

    async def set_ticket(self, client: AgentClient, ticket_no: str, status: str, note: str) -> Optional[dict]:
        code, result = await client.call("POST", f"/api/tickets/{ticket_no}/status", {"status": status, "note": note},
                                         what="desk ticket status")
        if result:
            self.stats.status_changes += 1
            self.stats.tickets_resolved += status == "resolved"
        return result

    async def rate(self, depth: int) -> None:
        weights = RATING_WEIGHTS if depth == 0 else {k: v for k, v in RATING_WEIGHTS.items() if k >= 3 or k == 0}
        score = self.rng.choices(list(weights), weights=list(weights.values()))[0]
        if score == 0:
            return
        reply = await self.say(self.rng.choice(RATING_TEXTS[score]))
        self.stats.ratings_given += 1
        if not self.was_rated:
            self.was_rated = True
            self.stats.rated += 1
        if HANDOFF_RE.search(reply) and depth == 0:  # a low rating goes to a human (negative_rating)
            await self.with_human(reply, depth + 1)

    async def run(self, scenario: str) -> None:
        await {"faq": self.faq, "order": self.order_query, "human": self.human, "logistics": self.logistics,
               "aftersales": self.aftersales, "complaint": self.complaint, "chitchat": self.chitchat,
               "unclear": self.unclear, "ticket_query": self.ticket_query, "wrong_phone": self.wrong_phone,
               }[scenario]()


# ------------------------------------------------------------------------------------------------
# the run

def scenario_plan(count: int, rng: random.Random, weights: Dict[str, int] = SCENARIO_WEIGHTS) -> List[str]:
    """`count` scenarios in the proportions of `weights` (largest remainder), shuffled."""
    total = sum(weights.values())
    quotas = {name: count * weight / total for name, weight in weights.items()}
    plan = {name: int(quota) for name, quota in quotas.items()}
    for name in sorted(quotas, key=lambda n: quotas[n] - plan[n], reverse=True)[:count - sum(plan.values())]:
        plan[name] += 1
    result = [name for name, n in plan.items() for _ in range(n)]
    rng.shuffle(result)
    return result


@dataclass
class Simulation:
    data: SimData
    stats: Stats
    rasa_url: str
    think_time: float
    rasa_session: Optional[aiohttp.ClientSession] = None
    desk: Optional[Desk] = None

    @property
    def webhook(self) -> str:
        return self.rasa_url.rstrip("/") + "/webhooks/rest/webhook"


async def simulate(data: SimData, *, conversations: int = 300, concurrency: int = 6, seed: int = 7,
                   rasa_url: str = DEFAULT_RASA_URL, desk_url: Optional[str] = DEFAULT_DESK_URL,
                   password: Optional[str] = None, handoff_timeout: float = 60.0, think_time: float = 0.3,
                   run_id: Optional[str] = None, progress: Optional[bool] = None,
                   on_start: Optional[Callable[[str], None]] = None) -> Tuple[Stats, str]:
    """Run the simulation; returns the counters and the sender prefix of this run (``sim-<run id>-``)."""
    from tqdm import tqdm

    stats = Stats()
    prefix = f"sim-{run_id or format(int(time.time() * 1000) % 36 ** 6, 'x')}-"
    if not data.orders:
        raise ValueError("the database has no orders to talk about; load the demo data (`kefu seed`)")
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as rasa_session:
        sim = Simulation(data, stats, rasa_url, think_time, rasa_session)
        status, _ = await request(rasa_session, stats, "GET", rasa_url.rstrip("/") + "/", what="rasa")
        if status != 200:
            raise ConnectionError(f"Rasa is not reachable at {rasa_url}")
        if desk_url:
            desk = Desk(desk_url, stats, handoff_timeout)
            if await desk.start(data.agents, password or os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD):
                sim.desk = desk
            else:
                logger.warning("simulate: no agent could log into the desk at %s; handoffs are not served", desk_url)
                await desk.finish(prefix)
        if on_start:
            on_start(prefix)
        plan = scenario_plan(conversations, random.Random(seed))
        semaphore = asyncio.Semaphore(max(1, concurrency))
        bar = tqdm(total=conversations, desc="simulate", unit="conv", disable=not progress, leave=False)

        async def one(n: int, scenario: str) -> None:
            async with semaphore:
                conversation = Conversation(sim, f"{prefix}{n}", random.Random(f"{seed}:{n}"))
                stats.scenarios[scenario] += 1
                try:
                    await conversation.run(scenario)
                except EndConversation:
                    pass
                except Exception as error:  # noqa: BLE001 - one broken conversation must not stop the run
                    stats.error(f"conversation failed: {type(error).__name__}")
                    logger.exception("simulate: conversation %s%d failed", prefix, n)
                finally:
                    stats.conversations += 1
                    bar.update(1)

        try:
            await asyncio.gather(*(one(n, scenario) for n, scenario in enumerate(plan, start=1)))
        finally:
            bar.close()
            if sim.desk is not None:
                await sim.desk.finish(prefix)
    return stats, prefix


def database_counts(database_url: Optional[str], prefix: str) -> Dict[str, int]:
    """Rows the run left in the business database (by its senders)."""
    from sqlalchemy import func, select

    from kefu.analytics.store import FollowUp
    from kefu.db import session_scope
    from kefu.models import Handoff, Rating, Ticket

    pattern = prefix.replace("_", r"\_") + "%"
    with session_scope(database_url) as session:
        def count(column) -> int:
            return session.execute(select(func.count()).where(column.like(pattern, escape="\\"))).scalar_one()
        return {"handoffs": count(Handoff.conversation_id), "ratings": count(Rating.conversation_id),
                "tickets": count(Ticket.conversation_id), "followups": count(FollowUp.conversation_id)}


def summary(stats: Stats, prefix: str, seconds: float, counts: Optional[Dict[str, int]]) -> str:
    lines = [
        f"simulated {stats.conversations} conversations in {seconds:.0f} s (senders {prefix}1 … "
        f"{prefix}{stats.conversations}); {stats.messages} customer messages",
        "  scenarios:    " + ", ".join(f"{k} {v}" for k, v in sorted(stats.scenarios.items(), key=lambda kv: -kv[1])),
        f"  handed off:   {stats.handed_off} conversations ({stats.handoffs} handoffs, {stats.assigned} served, "
        f"{stats.agent_replies} agent replies, {stats.chats_closed} closed, {stats.left_messages} left a message)",
        f"  rated:        {stats.rated} conversations ({stats.ratings_given} ratings)",
        f"  tickets:      {stats.desk_tickets} opened at the desk, {stats.bot_tickets} complaint tickets by the bot; "
        f"{stats.status_changes} status changes, {stats.tickets_resolved} resolved, "
        f"{stats.rating_requests} rating requests",
        f"  bot apologies: {stats.bot_apologies}",
        f"  errors:       {stats.errors}" + (" (" + ", ".join(f"{k} ×{v}" for k, v in stats.error_kinds.most_common())
                                             + ")" if stats.errors else ""),
    ]
    if counts is not None:
        lines.append("  database:     " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (senders {prefix}*)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# command line

def command(args) -> int:
    try:
        data = load_data(args.database_url, Path(args.kb_dir))
    except Exception as error:  # noqa: BLE001
        print(f"error: demo data not read from the database: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        stats, prefix = asyncio.run(simulate(
            data, conversations=args.conversations, concurrency=args.concurrency, seed=args.seed,
            rasa_url=args.rasa_url, desk_url=None if args.no_desk else args.desk_url,
            handoff_timeout=args.handoff_timeout, think_time=args.think_time, run_id=args.run_id,
            progress=sys.stderr.isatty()))
    except (ConnectionError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        counts: Optional[Dict[str, int]] = database_counts(args.database_url, prefix)
    except Exception as error:  # noqa: BLE001 - the summary still prints
        logger.warning("simulate: database counts not read: %s", error)
        counts = None
    print(summary(stats, prefix, time.monotonic() - started, counts))
    return 0 if stats.errors == 0 else 1


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register ``kefu simulate`` (called by :func:`kefu.cli.build_parser`)."""
    parser = sub.add_parser("simulate", parents=[common],
                            help="drive realistic conversations through Rasa and the agent desk (demo traffic)")
    parser.add_argument("--conversations", type=int, default=300, metavar="N")
    parser.add_argument("--concurrency", type=int, default=6, help="conversations at the same time (default 6)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the scenarios (default 7)")
    parser.add_argument("--rasa-url", default=DEFAULT_RASA_URL)
    parser.add_argument("--desk-url", default=DEFAULT_DESK_URL)
    parser.add_argument("--no-desk", action="store_true", help="customers only: nobody serves handoffs")
    parser.add_argument("--handoff-timeout", type=float, default=60.0,
                        help="seconds a customer waits for an agent before leaving a message (default 60)")
    parser.add_argument("--think-time", type=float, default=0.3,
                        help="up to this many seconds between a customer's messages (default 0.3)")
    parser.add_argument("--run-id", default=None, help="sender prefix part: senders are sim-<run id>-<n>")
    parser.add_argument("--kb-dir", default=os.environ.get("KEFU_KB_DIR") or str(PROJECT_ROOT / "data" / "kb"))
    parser.set_defaults(func=command)
