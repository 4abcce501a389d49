"""`kefu` command line: database, demo data, spaCy build, imports, KB, analytics reports and gap mining."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from sqlalchemy import func, select


def _db_upgrade(args) -> int:
    from kefu import migrate

    migrate.upgrade(args.database_url)
    print("database schema is up to date")
    return 0


def _seed(args) -> int:
    from kefu import demo_data, migrate
    from kefu.db import session_scope
    from kefu.models import Order

    migrate.upgrade(args.database_url)
    with session_scope(args.database_url) as session:
        if session.execute(select(func.count(Order.id))).scalar_one():
            print("database already holds orders; demo data not loaded")
            return 0
        counts = demo_data.seed(session)
    print("demo data loaded: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _build_spacy(args) -> int:
    from kefu import spacy_model

    path = spacy_model.build(Path(args.output), spacy_model.catalogue_names(args.database_url))
    print(f"spaCy pipeline written to {path}")
    return 0


def _import(args) -> int:
    from kefu import importer, migrate

    migrate.upgrade(args.database_url)
    status = 0
    for path in args.files:
        try:
            report = importer.import_file(args.database_url, Path(path))
        except importer.ImportValidationError as error:
            print(f"import failed, nothing written: {error}", file=sys.stderr)
            status = 1
            continue
        print(report.summary())
    return status


def _kb(args) -> int:
    from kefu.kb import csvio
    from kefu.kb.entries import KBValidationError, load_dir
    from kefu.kb.service import KnowledgeBase

    directory = Path(args.kb_dir)
    try:
        if args.kb_command == "check":
            print(f"{len(load_dir(directory))} entries, all valid")
        elif args.kb_command == "export":
            print(f"exported {csvio.export_csv(directory, Path(args.file))} entries to {args.file}")
        elif args.kb_command == "import":
            print(f"imported {csvio.import_csv(Path(args.file), directory)} entries into {directory}")
        elif args.kb_command == "search":
            kb = KnowledgeBase(directory)
            decision = kb.decide(args.text)
            print(f"decision: {decision.kind}")
            for hit in kb.search(args.text, k=args.top):
                print(f"{hit.score:.3f}  {hit.entry.id:<16} [{hit.entry.category}] {hit.entry.question}")
    except KBValidationError as error:
        print(f"knowledge base error, nothing changed: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=argparse.SUPPRESS,
                        help="SQLAlchemy URL of the business database (default: $DATABASE_URL or var/kefu.db)")
    parser = argparse.ArgumentParser(prog="kefu", description="Customer-service assistant tools")
    parser.add_argument("--database-url", dest="global_database_url", default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema", parents=[common])
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply all migrations", parents=[common]).set_defaults(func=_db_upgrade)

    seed = sub.add_parser("seed", help="load the demo data set into an empty database", parents=[common])
    seed.set_defaults(func=_seed)

    spacy = sub.add_parser("build-spacy", help="build the spaCy entity pipeline from project data", parents=[common])
    spacy.add_argument("--output", default="models/spacy_zh")
    spacy.set_defaults(func=_build_spacy)

    imp = sub.add_parser("import", help="import customers/products/orders/... from JSON or CSV", parents=[common])
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.set_defaults(func=_import)
    kb = sub.add_parser("kb", help="knowledge base: check, export/import CSV, search")
    kb.add_argument("--kb-dir", default="data/kb")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    kb_sub.add_parser("check", help="validate every KB file")
    kb_sub.add_parser("export", help="write the KB as one CSV file").add_argument("file")
    kb_sub.add_parser("import", help="replace the KB with a CSV file (all or nothing)").add_argument("file")
    search = kb_sub.add_parser("search", help="show what the bot would answer")
    search.add_argument("text")
    search.add_argument("--top", type=int, default=5)
    kb.set_defaults(func=_kb)

    from kefu.analytics import commands as analytics_commands  # report, gaps, analytics ingest/consume
    analytics_commands.add_parsers(sub, common)
    from kefu import simulate  # demo traffic through Rasa and the desk
    simulate.add_parser(sub, common)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    # accepted before or after the sub-command
    args.database_url = getattr(args, "database_url", None) or args.global_database_url
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
