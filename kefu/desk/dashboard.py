"""Supervisors' analytics dashboard (数据看板) in the agent desk.

- ``GET /dashboard``: the page (``static/dashboard.html``); anonymous visitors are sent to the login page,
  agents get a 403 page.
- ``GET /api/analytics/summary?since=YYYY-MM-DD&until=YYYY-MM-DD&channel=rest[&tz_offset=8]``: KPIs and chart
  series of the period (local dates at ``tz_offset`` hours from UTC, both days included; default: the last
  7 days), computed with :mod:`kefu.analytics.kpis` (definitions: docs/analytics.md). Supervisors only
  (401 anonymous, 403 agents); bad parameters give 400 with an English message.

Before computing, the summary runs an incremental ingestion (at most every few seconds): new rows of Rasa's
SQL event broker (the desk's ``--events-db``, if configured and present) and the desk / business events
(:func:`kefu.analytics.desk_events.sync`). A background task does the same every ~30 s; its errors are
logged, never raised. Ingestion failures never fail the dashboard: it shows what is stored and says so.

This module does not import :mod:`kefu.desk.app` at import time (``app`` imports this module); it reaches
the desk's auth and helpers at request time.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional

from aiohttp import web
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from kefu import labels
from kefu.desk.background import run_in_background
from kefu.db import PROJECT_ROOT, session_scope

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_DAYS = 7
MAX_DAYS = 366
TOP_N = 8
# background ingestion period (s) and the minimum age of the last ingestion before a request runs one
INGEST_INTERVAL = 30.0
REFRESH_MIN_AGE = 5.0
# the project's channels (input_channel names); channels seen in the store are added to the list
KNOWN_CHANNELS = ("rest", "socketio", "telegram", "wechat", "callback")
CHANNEL_LABELS = {"rest": "REST 接口", "socketio": "网页聊天", "telegram": "Telegram", "wechat": "微信",
                  "callback": "回调接口", "unknown": "未知"}
# intents as the dashboard names them (kefu.labels.INTENT plus the ones no customer ever picks)
INTENT_LABELS = {**labels.INTENT, "nlu_fallback": "未识别（兜底）", "none": "无意图"}
WEEKDAY_LABELS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class IngestState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_run: Optional[float] = None  # time.monotonic()
    status: Dict[str, Any] = field(default_factory=lambda: {"ok": None, "at": None, "error": None})


INGEST_STATE_KEY = web.AppKey("dashboard_ingest", IngestState)
INGEST_TASK_KEY = web.AppKey("dashboard_ingest_task", asyncio.Task)


def _desk():
    from kefu.desk import app as desk_app  # imported late: kefu.desk.app imports this module

    return desk_app


# ------------------------------------------------------------------------------------------------
# event ingestion

def broker_url(events_db: Optional[str]) -> Optional[str]:
    """SQLAlchemy URL of Rasa's SQL event broker: a URL as is, a path (relative to the project root) as
    SQLite; None when not configured."""
    if not events_db:
        return None
    if "://" in events_db:
        return events_db
    path = Path(events_db).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return f"sqlite:///{path}"


def _broker_present(url: str) -> bool:
    """A SQLite broker file that Rasa has not created yet is skipped (opening it would create it)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return bool(parsed.database) and parsed.database != ":memory:" and Path(parsed.database).exists()
    return True


def ingest_now(db_url: str, events_url: Optional[str]) -> Dict[str, Any]:
    """One incremental ingestion round (blocking): the broker table, then the desk tables."""
    from kefu.analytics import desk_events, ingest

    result: Dict[str, Any] = {"broker": None, "desk": None}
    if events_url and _broker_present(events_url):
        stats = ingest.ingest_sql_broker(db_url, events_url)
        result["broker"] = {"read": stats.read, "stored": stats.stored, "quarantined": stats.quarantined}
    with session_scope(db_url) as session:
        result["desk"] = desk_events.sync(session)
    return result


async def refresh(app: web.Application, *, min_age: float = REFRESH_MIN_AGE) -> Dict[str, Any]:
    """Run an ingestion round unless one finished less than ``min_age`` seconds ago; never raises."""
    state = app[INGEST_STATE_KEY]
    async with state.lock:
        if state.last_run is not None and time.monotonic() - state.last_run < min_age:
            return state.status
        desk = _desk()
        events_url = broker_url(app.get(desk.EVENTS_DB_KEY))
        try:
            counts = await asyncio.get_running_loop().run_in_executor(None, ingest_now, app[desk.DB_KEY],
                                                                      events_url)
            state.status = {"ok": True, "at": _iso(datetime.utcnow()), "error": None,
                            "broker": events_url is not None, "counts": counts}
            stored = (counts["broker"] or {}).get("stored", 0) + sum(counts["desk"].values())
            if stored:
                logger.info("dashboard: ingested %s new analytics events", stored)
        except Exception as error:  # noqa: BLE001 - the dashboard shows what is stored
            logger.exception("dashboard: event ingestion failed")
            state.status = {"ok": False, "at": _iso(datetime.utcnow()), "error": type(error).__name__,
                            "broker": events_url is not None}
        state.last_run = time.monotonic()
        return state.status


async def ingest_loop(app: web.Application, interval: float) -> None:
    """Keep the analytics store current while the desk runs (errors are logged by :func:`refresh`)."""
    await asyncio.sleep(min(5.0, interval))
    while True:
        await refresh(app, min_age=0)
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------------------------
# parameters

def _iso(value: Optional[datetime]) -> Optional[str]:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def _date_param(query, name: str) -> Optional[date]:
    raw = query.get(name, "").strip()
    if not raw:
        return None
    if not _DATE.match(raw):
        raise _desk().ApiError(400, f"'{name}' must be a date YYYY-MM-DD")
    try:
        return datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise _desk().ApiError(400, f"'{name}' is not a valid date: {raw[:10]}") from None


def _tz_param(query) -> float:
    from kefu.analytics.kpis import DEFAULT_TZ_OFFSET

    raw = query.get("tz_offset", "").strip()
    if not raw:
        return DEFAULT_TZ_OFFSET
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not -12 <= value <= 14:  # also false for nan
        raise _desk().ApiError(400, "'tz_offset' must be a number of hours between -12 and 14")
    return value


@dataclass
class Params:
    since: date  # local dates, both included
    until: date
    tz_offset: float
    channel: Optional[str]
    today: date

    @property
    def since_utc(self) -> datetime:
        return datetime.combine(self.since, datetime.min.time()) - timedelta(hours=self.tz_offset)

    @property
    def until_utc(self) -> datetime:  # exclusive
        return datetime.combine(self.until + timedelta(days=1), datetime.min.time()) - timedelta(hours=self.tz_offset)

    def days(self) -> List[str]:
        return [(self.since + timedelta(days=i)).isoformat() for i in range((self.until - self.since).days + 1)]


def parse_params(query, now: Optional[datetime] = None) -> Params:
    tz_offset = _tz_param(query)
    today = ((now or datetime.utcnow()) + timedelta(hours=tz_offset)).date()
    since, until = _date_param(query, "since"), _date_param(query, "until")
    until = until or today
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise _desk().ApiError(400, "'since' must not be after 'until'")
    if (until - since).days + 1 > MAX_DAYS:
        raise _desk().ApiError(400, f"the period is longer than {MAX_DAYS} days; choose a shorter one")
    channel = query.get("channel", "").strip() or None
    return Params(since=since, until=until, tz_offset=tz_offset, channel=channel, today=today)


def _store_channels(session) -> List[str]:
    from kefu.analytics.store import AnalyticsEvent

    return sorted(c for c in session.execute(
        select(AnalyticsEvent.channel).where(AnalyticsEvent.channel.is_not(None)).distinct()).scalars() if c)


def channel_options(stored: List[str]) -> List[Dict[str, str]]:
    names = list(KNOWN_CHANNELS) + [c for c in stored if c not in KNOWN_CHANNELS]
    return [{"value": c, "label": CHANNEL_LABELS.get(c, c)} for c in names]


# ------------------------------------------------------------------------------------------------
# computing

def _jsonable(metrics: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(metrics)
    out["csat_distribution"] = {str(k): v for k, v in metrics["csat_distribution"].items()}
    return out


def summary(session, params: Params) -> Dict[str, Any]:
    """KPIs and chart series of the period and channel (ValueError-free: params are validated)."""
    from kefu.analytics import kpis

    if not inspect(session.connection()).has_table("analytics_events"):
        raise _desk().ApiError(503, "the analytics tables do not exist yet: run `kefu db upgrade`")
    stored_channels = _store_channels(session)
    if params.channel is not None and params.channel not in set(KNOWN_CHANNELS) | set(stored_channels) | {"unknown"}:
        known = ", ".join(list(KNOWN_CHANNELS) + [c for c in stored_channels if c not in KNOWN_CHANNELS])
        raise _desk().ApiError(400, f"unknown channel '{params.channel[:40]}'; known: {known}")
    since, until, tz = params.since_utc, params.until_utc, params.tz_offset
    analysis = kpis.analyze(kpis.load_events(session, since, until))
    overall = kpis.compute(analysis, since, until, channel=params.channel, tz_offset=tz)["all"]
    by_day = kpis.compute(analysis, since, until, channel=params.channel, group_by="day", tz_offset=tz)
    by_intent = kpis.compute(analysis, since, until, channel=params.channel, group_by="intent", tz_offset=tz)

    # volume heat-map: conversations by local weekday x hour of their start (the units compute() counts)
    cells = Counter()
    for conv in analysis.conversations:
        if conv.counted and since <= conv.start < until and (params.channel is None or conv.channel == params.channel):
            local = conv.start + timedelta(hours=tz)
            cells[(local.weekday(), local.hour)] += 1
    heatmap = [[cells[(weekday, hour)] for hour in range(24)] for weekday in range(7)]

    empty = kpis.compute(kpis.analyze([]))["all"]
    days = [(day, by_day.get(day, empty)) for day in params.days()]
    intents = sorted(((name, m) for name, m in by_intent.items() if m["conversations"]),
                     key=lambda item: (-item[1]["conversations"], item[0]))[:TOP_N]
    reasons = list(overall["handoff_reasons"].items())[:TOP_N]
    return {
        "period": {"since": params.since.isoformat(), "until": params.until.isoformat(), "tz_offset": tz,
                   "today": params.today.isoformat(), "since_utc": _iso(since), "until_utc": _iso(until)},
        "channel": params.channel,
        "channels": channel_options(stored_channels),
        "kpis": _jsonable(overall),
        "charts": {
            "volume_heatmap": {"weekdays": list(WEEKDAY_LABELS), "hours": list(range(24)), "values": heatmap,
                               "max": max(max(row) for row in heatmap)},
            "containment_by_day": [{"day": d, "conversations": m["conversations"],
                                    "containment_rate": m["containment_rate"]} for d, m in days],
            "wait_by_day": [{"day": d, "handoffs": m["handoffs"], "queue_wait_mean": m["queue_wait_mean"],
                             "queue_wait_p90": m["queue_wait_p90"]} for d, m in days],
            "csat_distribution": [{"score": s, "count": n} for s, n in overall["csat_distribution"].items()],
            "top_intents": [{"intent": name, "label": INTENT_LABELS.get(name, name),
                             "conversations": m["conversations"], "handoff_rate": m["handoff_rate"]}
                            for name, m in intents],
            "top_handoff_reasons": [{"reason": r, "label": labels.HANDOFF_REASON.get(r, r), "count": n}
                                    for r, n in reasons],
        },
    }


# ------------------------------------------------------------------------------------------------
# handlers

def supervisor_only(handler: Callable[[web.Request, Any], Awaitable[web.StreamResponse]]):
    """Like the desk's ``authed()`` (401 when not logged in), and 403 for anyone but a supervisor."""
    @functools.wraps(handler)
    async def inner(request: web.Request) -> web.StreamResponse:
        desk = _desk()
        auth = await desk._auth(request, write=False)
        if not auth.supervisor:
            raise desk.ApiError(403, "the dashboard is for supervisors only")
        return await handler(request, auth)
    return inner


@supervisor_only
async def get_summary(request: web.Request, auth) -> web.Response:
    params = parse_params(request.query)
    status = await refresh(request.app)
    data = await _desk()._db(request, summary, params)
    data["ingest"] = status
    data["generated_at"] = _iso(datetime.utcnow())
    return web.json_response(data, headers={"Cache-Control": "no-store"})


FORBIDDEN_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>无权访问 · 数据看板</title>
<link rel="stylesheet" href="/static/desk.css"></head>
<body><section class="login"><div class="card" id="forbidden">
<h1>无权访问</h1><p>数据看板仅对主管开放。如需查看，请使用主管账号登录。</p>
<p><a href="/">返回客服工作台</a></p></div></section></body></html>
"""


async def dashboard_page(request: web.Request) -> web.StreamResponse:
    desk = _desk()
    try:
        auth = await desk._auth(request, write=False)
    except desk.ApiError:
        raise web.HTTPFound("/?next=/dashboard") from None
    if not auth.supervisor:
        return web.Response(status=403, text=FORBIDDEN_PAGE, content_type="text/html")
    return web.FileResponse(STATIC_DIR / "dashboard.html", headers={"Cache-Control": "no-cache"})


def add_dashboard_routes(app: web.Application) -> None:
    """Routes, ingestion state and the background ingestion task (when an events DB is configured)."""
    app[INGEST_STATE_KEY] = IngestState()
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/api/analytics/summary", get_summary)

    run_in_background(app, INGEST_TASK_KEY, lambda app: ingest_loop(app, INGEST_INTERVAL)
                      if broker_url(app.get(_desk().EVENTS_DB_KEY)) and INGEST_INTERVAL > 0 else None)

