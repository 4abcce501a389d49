"""Start the assistant as real processes: `rasa run actions` + `rasa run` (REST and any other channels).

Used by the end-to-end tests and the benchmarks, so both exercise exactly what
`make run` serves: real HTTP between Rasa and the action server, the trained
model, a SQL tracker store and the business database given by URL.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import requests
import yaml

from kefu.db import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent
MODEL = PROJECT_ROOT / "models" / "kefu.tar.gz"


def action_endpoint(port: int) -> Dict:
    """``endpoints.yml``'s action endpoint (selective domain, events window), pointed at the action server on
    `port`: the bench/test stack and the production profile take its settings from there."""
    config = yaml.safe_load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8"))["action_endpoint"]
    return {**config, "url": f"http://127.0.0.1:{port}/webhook"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited early:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not up after {timeout}s:\n{log.read_text()[-3000:]}")


class ActionServer:
    def __init__(self, port: int, env: Dict[str, str], log: Path, workers: int = 1):
        self.port, self.env, self.log, self.workers = port, env, log, workers
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "rasa"), "run", "actions", "--port", str(self.port), "--actions", "actions"],
            cwd=PROJECT_ROOT, env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{self.port}/health", self.proc, self.log, timeout=90)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


class RasaStack:
    """The Rasa server (REST channel) and its action server, on free local ports."""

    def __init__(self, workdir: Path, db_url: str, model: Path = MODEL, extra_env: Optional[Dict[str, str]] = None,
                 channels: Optional[Dict[str, Optional[dict]]] = None, api_token: Optional[str] = None):
        """`channels`: extra credentials.yml entries (channel class path -> settings) beside ``rest``;
        `api_token`: open Rasa's HTTP API (``--enable-api``) protected by this token."""
        if not model.exists():
            raise RuntimeError(f"no trained model at {model}: run `make train` first")
        self.workdir, self.db_url, self.model = Path(workdir), db_url, model
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "DATABASE_URL": db_url, "RASA_TELEMETRY_ENABLED": "false",
                    "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", **(extra_env or {})}
        self.env.pop("KEFU_EVALUATING_STORIES", None)
        self.actions = ActionServer(free_port(), self.env, self.workdir / "actions.log")
        self.rasa_port = free_port()
        self.url = f"http://127.0.0.1:{self.rasa_port}"
        self.webhook = f"{self.url}/webhooks/rest/webhook"
        self.events_db = self.workdir / "events.db"
        (self.workdir / "endpoints.yml").write_text(
            yaml.safe_dump({"action_endpoint": action_endpoint(self.actions.port)}) +
            f'tracker_store:\n  type: kefu.tracker_store.ResilientSQLTrackerStore\n  dialect: sqlite\n  db: "{self.workdir / "tracker.db"}"\n'
            # as in endpoints.yml (`make run`): every event also goes to the SQL event broker
            f'event_broker:\n  type: kefu.event_broker.BatchedSQLEventBroker\n  dialect: sqlite\n  db: "{self.events_db}"\n')
        (self.workdir / "credentials.yml").write_text(yaml.safe_dump({"kefu.channels.rest.RestInput": None, **(channels or {})}))
        self.api_token = api_token
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "RasaStack":
        self.actions.start()
        log = self.workdir / "rasa.log"
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "rasa"), "run", "-m", str(self.model), "--endpoints", str(self.workdir / "endpoints.yml"),
             "--credentials", str(self.workdir / "credentials.yml"), "--port", str(self.rasa_port)]
            + (["--enable-api", "--auth-token", self.api_token] if self.api_token else []),
            cwd=PROJECT_ROOT, env=self.env, stdout=log.open("a"), stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/webhooks/rest/", self.proc, log)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.actions.stop()

    def say(self, sender: str, text: str) -> List[dict]:
        response = requests.post(self.webhook, json={"sender": sender, "message": text}, timeout=60)
        response.raise_for_status()
        return response.json()

    def text(self, sender: str, text: str) -> str:
        """The bot's whole answer to one message, as one string (button titles included)."""
        parts = []
        for message in self.say(sender, text):
            parts.append(message.get("text", ""))
            parts += [b["title"] for b in message.get("buttons", [])]
        return "\n".join(parts)


class DeskServer:
    """The agent desk (which also serves the web chat widget) as its own process, like `make run` starts it."""

    def __init__(self, workdir: Path, db_url: str, rasa_url: str, rasa_token: Optional[str],
                 widget_server: str = "", env: Optional[Dict[str, str]] = None, events_db: str = ""):
        """`events_db`: Rasa's SQL event broker file the desk ingests for analytics ("" = none)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [str(VENV_BIN / "python"), "-m", "kefu.desk.app", "--port", str(self.port), "--db-url", db_url,
                     "--rasa-url", rasa_url, "--widget-server", widget_server, "--events-db", events_db]
        self.env = {**(env or os.environ), "RASA_TELEMETRY_ENABLED": "false", "PYTHONWARNINGS": "ignore"}
        if rasa_token:
            self.env["RASA_TOKEN"] = rasa_token
        self.log = self.workdir / "desk.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "DeskServer":
        self.proc = subprocess.Popen(self.args, cwd=PROJECT_ROOT, env=self.env, stdout=self.log.open("a"),
                                     stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/widget.js", self.proc, self.log, timeout=60)
        return self

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
