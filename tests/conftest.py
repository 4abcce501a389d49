"""Shared fixtures: seeded temp databases and a real Rasa + action server stack."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kefu import demo_data, migrate
from kefu.db import session_scope
from kefu.stack import RasaStack

ROOT = Path(__file__).resolve().parent.parent


def seeded_db(url: str) -> str:
    migrate.upgrade(url)
    with session_scope(url) as session:
        demo_data.seed(session)
    return url


def seeded_sqlite(path: Path) -> str:
    return seeded_db(f"sqlite:///{path}")


@pytest.fixture(scope="session")
def demo_db_url(tmp_path_factory) -> str:
    """A migrated SQLite database with the demo data, shared by the whole session."""
    return seeded_sqlite(tmp_path_factory.mktemp("db") / "kefu.db")


@pytest.fixture
def fresh_db_url(tmp_path) -> str:
    """A migrated SQLite database with the demo data, private to one test."""
    return seeded_sqlite(tmp_path / "kefu.db")


@pytest.fixture(scope="session")
def kb_copy(tmp_path_factory) -> Path:
    """A copy of data/kb/ that tests may edit while the stack runs (hot reload)."""
    target = tmp_path_factory.mktemp("kb") / "kb"
    shutil.copytree(ROOT / "data" / "kb", target)
    return target


@pytest.fixture(scope="session")
def rasa_stack(tmp_path_factory, demo_db_url, kb_copy):
    stack = RasaStack(tmp_path_factory.mktemp("rasa"), demo_db_url, extra_env={"KEFU_KB_DIR": str(kb_copy)}).start()
    yield stack
    stack.stop()
