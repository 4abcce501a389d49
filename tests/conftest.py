"""Shared fixtures: seeded temp databases and a real Rasa + action server stack."""
from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kefu import demo_data, migrate
from kefu.cluster import listening
from kefu.db import session_scope
from kefu.stack import RasaStack, free_port

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


# The session stack's Rasa HTTP API is open, with this token, for the desk and channel push tests.
STACK_API_TOKEN = "test-" + secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def fake_wechat():
    """A local fake of the WeChat API (access token + customer-service messages) for the WeChat channel."""
    from fakes.wechat_api import FakeWeChatApi

    fake = FakeWeChatApi().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def fake_telegram():
    """A local fake of the Telegram Bot API for the Telegram channel."""
    from fakes.telegram_api import FakeTelegramAPI

    fake = FakeTelegramAPI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def callback_receiver():
    """The merchant's endpoint that the callback channel posts replies to."""
    from fakes.callback_receiver import CallbackReceiver

    receiver = CallbackReceiver(secret=secrets.token_hex(16)).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def channel_credentials(fake_wechat, fake_telegram, callback_receiver) -> dict:
    """credentials.yml entries of the session stack beside ``rest`` (channel class path -> settings).
    A channel whose peer is on the internet gets a local fake peer from its own session fixture."""
    return {
        "kefu.channels.socketio.SocketIOInput": {
            "user_message_evt": "user_uttered", "bot_message_evt": "bot_uttered", "session_persistence": True},
        "kefu.channels.wechat.WeChatInput": fake_wechat.channel_credentials(),
        "kefu.channels.telegram.TelegramInput": fake_telegram.channel_credentials(),
        "kefu.channels.callback.CallbackInput": callback_receiver.channel_credentials(),
    }


@pytest.fixture(scope="session")
def rasa_stack(tmp_path_factory, demo_db_url, kb_copy, channel_credentials):
    stack = RasaStack(tmp_path_factory.mktemp("rasa"), demo_db_url, extra_env={"KEFU_KB_DIR": str(kb_copy)},
                      channels=channel_credentials, api_token=STACK_API_TOKEN).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def test_split_texts():
    """The texts of the held-out NLU test split, entity annotations removed."""
    from kefu.analytics.gaps import load_nlu_examples

    return tuple(text for texts in load_nlu_examples(ROOT / "tests" / "nlu_test").values() for text in texts)


class PrivateRedis:
    """A redis-server of the test's own (Debian's package), so a test can stop and start it."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None

    def start(self) -> "PrivateRedis":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if listening("127.0.0.1", self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
