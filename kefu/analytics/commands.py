"""`kefu report`, `kefu gaps` and `kefu analytics …` (registered by kefu.cli)."""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from kefu.db import PROJECT_ROOT

DEFAULT_OUT = "var/reports"


def _prepare(args) -> None:
    """Schema up to date and desk/business events derived into the store."""
    from kefu import migrate
    from kefu.analytics import desk_events
    from kefu.db import session_scope

    migrate.upgrade(args.database_url)
    if getattr(args, "ingest", False):
        _ingest_broker(args)
    with session_scope(args.database_url) as session:
        desk_events.sync(session)


def _ingest_broker(args) -> int:
    from kefu.analytics import ingest

    stats = ingest.ingest_sql_broker(args.database_url, args.broker_url, batch_size=args.batch_size,
                                     progress=sys.stderr.isatty())
    print(f"event broker {args.broker_url}: {stats.summary()}")
    return 0


def _quiet_jieba() -> None:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)


def _period(args):
    from kefu.analytics.period import period

    _quiet_jieba()

    return period(args.since, args.until, tz_offset=args.tz_offset)


def _report(args) -> int:
    from kefu.analytics import report
    from kefu.db import session_scope

    try:
        since, until = _period(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _prepare(args)
    progress = not args.no_progress and sys.stderr.isatty()
    with session_scope(args.database_url) as session:
        data = report.build_report(session, since, until, channel=args.channel, tz_offset=args.tz_offset,
                                   with_gaps=not args.no_gaps, progress=progress)
    print(report.format_tables(data))
    html_path, charts = report.write_report(data, Path(args.out))
    print(f"charts: {', '.join(str(c.path) for c in charts) or 'none (no data)'}")
    print(f"html: {html_path}")
    return 0


def _gaps(args) -> int:
    from kefu.analytics import gaps
    from kefu.db import session_scope

    try:
        since, until = _period(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _prepare(args)
    with session_scope(args.database_url) as session:
        clusters = gaps.mine(session, since, until, channel=args.channel, low_confidence=args.low_confidence,
                             threshold=args.threshold, min_size=args.min_size, draft=args.draft)
    clusters = clusters[:args.top]
    print(gaps.describe(clusters, top=args.top, examples=args.examples))
    if clusters and not args.no_export:
        for path in gaps.export_drafts(clusters, Path(args.out)):
            print(f"draft: {path}")
    return 0


def _analytics(args) -> int:
    from kefu import migrate
    from kefu.analytics import desk_events, ingest
    from kefu.db import session_scope

    migrate.upgrade(args.database_url)
    if args.analytics_command == "ingest":
        if not args.no_broker:
            _ingest_broker(args)
        if not args.no_desk:
            with session_scope(args.database_url) as session:
                counts = desk_events.sync(session)
            print("desk events: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    elif args.analytics_command == "consume":
        def batch(stats):
            print(f"rabbitmq {args.queue}: {stats.summary()}", flush=True)
        try:
            stats = asyncio.run(ingest.consume_rabbitmq(
                args.database_url, amqp_url=args.amqp_url, queue=args.queue, max_messages=args.max_messages,
                idle_timeout=args.idle_timeout, on_batch=batch))
        except KeyboardInterrupt:
            return 0
        print(f"rabbitmq {args.queue} total: {stats.summary()}")
    elif args.analytics_command == "quarantine":
        from sqlalchemy import select

        from kefu.analytics.store import QuarantinedEvent

        with session_scope(args.database_url) as session:
            rows = session.execute(select(QuarantinedEvent).order_by(QuarantinedEvent.id.desc())
                                   .limit(args.limit)).scalars().all()
            for row in rows:
                print(f"{row.id}  {row.received_at:%Y-%m-%d %H:%M:%S}  {row.source_ref or '-'}  {row.reason}"
                      f"\n      {row.payload[:160]}")
            if not rows:
                print("quarantine is empty")
    return 0


def _period_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="7d", help="start: 7d, 24h, 2w, YYYY-MM-DD (local time; default 7d)")
    parser.add_argument("--until", default=None, help="end (exclusive; a bare date includes that day; default now)")
    parser.add_argument("--channel", default=None, help="only this channel (e.g. rest, socketio, telegram)")
    parser.add_argument("--tz-offset", type=float, default=8.0,
                        help="local time zone in hours from UTC for dates, hours and weekdays (default 8)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--ingest", action="store_true",
                        help="first read new events from the SQL event broker (--broker-url)")
    _broker_options(parser)


def _broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker-url", default=f"sqlite:///{PROJECT_ROOT / 'var' / 'events.db'}",
                        help="SQLAlchemy URL of Rasa's SQL event broker database (default var/events.db)")
    parser.add_argument("--batch-size", type=int, default=1000)


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    report = sub.add_parser("report", help="KPI tables, PNG charts and an HTML report", parents=[common])
    _period_options(report)
    report.add_argument("--no-gaps", action="store_true", help="leave out knowledge-gap mining")
    report.add_argument("--no-progress", action="store_true")
    report.set_defaults(func=_report)

    gaps = sub.add_parser("gaps", help="cluster unanswered questions and draft NLU / KB YAML", parents=[common])
    _period_options(gaps)
    gaps.add_argument("--draft", choices=("auto", "nlu", "kb"), default="auto",
                      help="draft kind: auto (KB entry paraphrases, intent examples or a new KB entry), nlu, kb")
    gaps.add_argument("--low-confidence", type=float, default=0.6,
                      help="intent confidence below which a message is a candidate (default 0.6)")
    gaps.add_argument("--threshold", type=float, default=0.85,
                      help="cosine distance cut of the clustering (default 0.85; lower: tighter clusters)")
    gaps.add_argument("--min-size", type=int, default=2, help="smallest cluster reported (default 2)")
    gaps.add_argument("--top", type=int, default=10, help="clusters shown and drafted (default 10)")
    gaps.add_argument("--examples", type=int, default=5, help="examples shown per cluster")
    gaps.add_argument("--no-export", action="store_true", help="do not write YAML drafts")
    gaps.set_defaults(func=_gaps)

    analytics = sub.add_parser("analytics", help="analytics store: ingest events, consume RabbitMQ, quarantine")
    analytics_sub = analytics.add_subparsers(dest="analytics_command", required=True)
    ingest = analytics_sub.add_parser("ingest", help="read the SQL event broker and the desk tables",
                                      parents=[common])
    _broker_options(ingest)
    ingest.add_argument("--no-broker", action="store_true", help="only derive desk events")
    ingest.add_argument("--no-desk", action="store_true", help="only read the event broker")
    consume = analytics_sub.add_parser("consume", help="consume Rasa events from RabbitMQ", parents=[common])
    consume.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    consume.add_argument("--queue", default="rasa_core_events")
    consume.add_argument("--max-messages", type=int, default=None)
    consume.add_argument("--idle-timeout", type=float, default=None,
                         help="stop after the queue was empty this many seconds (default: run forever)")
    quarantine = analytics_sub.add_parser("quarantine", help="show quarantined (malformed) events",
                                          parents=[common])
    quarantine.add_argument("--limit", type=int, default=20)
    analytics.set_defaults(func=_analytics)
