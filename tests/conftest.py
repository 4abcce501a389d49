"""Shared fixtures: seeded temp databases and a real Rasa + action server stack."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import requests

from kefu import demo_data, migrate
from kefu.db import session_scope

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MODEL = ROOT / "models" / "kefu.tar.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seeded_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        demo_data.seed(session)
    return url


@pytest.fixture(scope="session")
def demo_db_url(tmp_path_factory) -> str:
    """A migrated SQLite database with the demo data, shared by the whole session."""
    return seeded_sqlite(tmp_path_factory.mktemp("db") / "kefu.db")


@pytest.fixture
def fresh_db_url(tmp_path) -> str:
    """A migrated SQLite database with the demo data, private to one test."""
    return seeded_sqlite(tmp_path / "kefu.db")


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} process exited early:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not up after {timeout}s:\n{log.read_text()[-3000:]}")


class ActionServer:
    def __init__(self, port: int, env: Dict[str, str], log: Path):
        self.port, self.env, self.log = port, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "rasa"), "run", "actions", "--port", str(self.port), "--actions", "actions"],
            cwd=ROOT, env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        _wait_http(f"http://127.0.0.1:{self.port}/health", self.proc, self.log, timeout=90)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


class RasaStack:
    """`rasa run` (REST channel) + `rasa run actions` as real processes over real HTTP."""

    def __init__(self, tmp: Path, db_url: str):
        if not MODEL.exists():
            raise RuntimeError(f"no trained model at {MODEL}: run `make train` first")
        self.tmp, self.db_url = tmp, db_url
        self.env = {**os.environ, "DATABASE_URL": db_url, "RASA_TELEMETRY_ENABLED": "false",
                    "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
        self.env.pop("KEFU_EVALUATING_STORIES", None)
        self.actions = ActionServer(free_port(), self.env, tmp / "actions.log")
        self.rasa_port = free_port()
        self.url = f"http://127.0.0.1:{self.rasa_port}"
        (tmp / "endpoints.yml").write_text(
            f'action_endpoint:\n  url: "http://127.0.0.1:{self.actions.port}/webhook"\n'
            f'tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: "{tmp / "tracker.db"}"\n')
        (tmp / "credentials.yml").write_text("rest:\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.actions.start()
        log = self.tmp / "rasa.log"
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "rasa"), "run", "-m", str(MODEL), "--endpoints", str(self.tmp / "endpoints.yml"),
             "--credentials", str(self.tmp / "credentials.yml"), "--port", str(self.rasa_port)],
            cwd=ROOT, env=self.env, stdout=log.open("a"), stderr=subprocess.STDOUT)
        _wait_http(f"{self.url}/webhooks/rest/", self.proc, log)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.actions.stop()

    def say(self, sender: str, text: str) -> List[dict]:
        response = requests.post(f"{self.url}/webhooks/rest/webhook",
                                 json={"sender": sender, "message": text}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def text(self, sender: str, text: str) -> str:
        """The bot's whole answer to one message, as one string (buttons included)."""
        parts = []
        for message in self.say(sender, text):
            parts.append(message.get("text", ""))
            parts += [b["title"] for b in message.get("buttons", [])]
        return "\n".join(parts)


@pytest.fixture(scope="session")
def rasa_stack(tmp_path_factory, demo_db_url):
    stack = RasaStack(tmp_path_factory.mktemp("rasa"), demo_db_url)
    stack.start()
    yield stack
    stack.stop()
