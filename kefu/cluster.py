"""The production profile: several Rasa processes behind nginx on PostgreSQL, Redis and RabbitMQ.

    customers ──▶ nginx (:5000) ──least_conn──▶ rasa run :5005, :5015 … (SANIC_WORKERS each)
                        │  /socket.io/ sticky by client IP (the widget's polling session lives in one process)
                        │  /webhooks/wechat/ by the user's openid (WeChat's per-user state stays in one process)
                        ▼
    tracker store: PostgreSQL (kefu.tracker_store.ResilientSQLTrackerStore)   business DB: PostgreSQL
    lock store: Redis (kefu.lock_store.AtomicRedisLockStore: one process at a time per conversation, in order)
    event broker: RabbitMQ (analytics)         action server: `rasa run actions` with SANIC_WORKERS workers

`Cluster` starts it all as real processes, for `make run-prod` (`python -m kefu.cluster`), the tests
(`tests/test_prod_profile.py`) and the load benchmark. It needs the services to be there and says so loudly.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from kefu.db import PROJECT_ROOT
from kefu.ratelimit import PREFIX_ENV, REDIS_URL_ENV
from kefu.stack import MODEL, VENV_BIN, ActionServer, DeskServer, action_endpoint, free_port, wait_http

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class ServiceMissing(RuntimeError):
    """A service the production profile needs is not reachable."""


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Services:
    """Where PostgreSQL, Redis and RabbitMQ are (the defaults are the local ones on our machines)."""

    pg_host: str = os.environ.get("KEFU_PG_HOST", "127.0.0.1")
    pg_port: int = int(os.environ.get("KEFU_PG_PORT", "5432"))
    pg_user: str = os.environ.get("KEFU_PG_USER", "postgres")
    pg_password: str = os.environ.get("KEFU_PG_PASSWORD", "")
    redis_host: str = os.environ.get("KEFU_REDIS_HOST", "127.0.0.1")
    redis_port: int = int(os.environ.get("KEFU_REDIS_PORT", "6379"))
    redis_db: int = int(os.environ.get("KEFU_REDIS_DB", "0"))
    rabbit_host: str = os.environ.get("KEFU_RABBITMQ_HOST", "127.0.0.1")
    rabbit_port: int = int(os.environ.get("KEFU_RABBITMQ_PORT", "5672"))
    rabbit_user: str = os.environ.get("KEFU_RABBITMQ_USER", "guest")
    rabbit_password: str = os.environ.get("KEFU_RABBITMQ_PASSWORD", "guest")

    def check(self) -> None:
        missing = [f"{name} on {host}:{port}" for name, host, port in (
            ("PostgreSQL", self.pg_host, self.pg_port), ("Redis", self.redis_host, self.redis_port),
            ("RabbitMQ", self.rabbit_host, self.rabbit_port)) if not listening(host, port)]
        if missing:
            raise ServiceMissing("the production profile needs " + ", ".join(missing))
        if not Path(NGINX).exists():
            raise ServiceMissing("the production profile needs nginx (Debian package nginx-light)")

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def pg_url(self, database: str) -> str:
        auth = self.pg_user + (f":{self.pg_password}" if self.pg_password else "")
        return f"postgresql+psycopg2://{auth}@{self.pg_host}:{self.pg_port}/{database}"

    def create_database(self, name: str, *, fresh: bool = False) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(host=self.pg_host, port=self.pg_port, user=self.pg_user,
                                password=self.pg_password or None, dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                if fresh:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()

    def drop_database(self, name: str) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(host=self.pg_host, port=self.pg_port, user=self.pg_user,
                                password=self.pg_password or None, dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            conn.close()

    def delete_queue(self, name: str) -> None:
        """Remove a RabbitMQ queue: the events of a cluster nobody consumes would otherwise pile up on disk."""
        import asyncio

        import aio_pika

        async def delete() -> None:
            connection = await aio_pika.connect(host=self.rabbit_host, port=self.rabbit_port,
                                                login=self.rabbit_user, password=self.rabbit_password)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(name)

        asyncio.run(delete())


def endpoints(services: Services, *, action_port: int, tracker_db: str, key_prefix: str,
              events_queue: str) -> Dict:
    tracker = {"type": "kefu.tracker_store.ResilientSQLTrackerStore", "dialect": "postgresql",
               "url": services.pg_host, "port": services.pg_port, "db": tracker_db, "username": services.pg_user}
    if services.pg_password:
        tracker["password"] = services.pg_password
    return {
        "action_endpoint": action_endpoint(action_port),
        "tracker_store": tracker,
        "lock_store": {"type": "kefu.lock_store.AtomicRedisLockStore", "url": services.redis_host,
                       "port": services.redis_port,
                       "db": services.redis_db, "key_prefix": key_prefix},
        "event_broker": {"type": "kefu.event_broker.BatchedPikaEventBroker", "url": services.rabbit_host,
                         "port": services.rabbit_port, "username": services.rabbit_user,
                         "password": services.rabbit_password, "queues": [events_queue]},
    }


def nginx_conf(workdir: Path, port: int, rasa_ports: List[int]) -> str:
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=3s;" for p in rasa_ports)
    temp = workdir / "nginx-tmp"
    return f"""# generated by kefu.cluster
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  client_max_body_size 1m;
  upstream rasa {{
    least_conn;
{servers}
    keepalive 128;
  }}
  upstream rasa_sticky {{
    ip_hash;
{servers}
  }}
  # WeChat's duplicate detection (a retried message waits for the first delivery's reply), its button memory and
  # its rate limit are per user, in the process that took the message (kefu/channels/wechat.py). WeChat puts the
  # user's openid in the query string of every message, so each user keeps to one process; the users of a
  # process that is down are spread over the others.
  upstream rasa_wechat {{
    hash $arg_openid consistent;
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_read_timeout 60s;
    # a request that never reached a Rasa process (refused, process gone) goes to the next one
    proxy_next_upstream error timeout http_502;
    proxy_intercept_errors on;
    error_page 500 502 503 504 = @busy;
    location /socket.io/ {{ proxy_pass http://rasa_sticky; }}
    location /webhooks/wechat/ {{ proxy_pass http://rasa_wechat; }}
    location / {{ proxy_pass http://rasa; }}
    location @busy {{
      default_type application/json;
      return 503 '[{{"recipient_id": "", "text": "抱歉，系统繁忙，请稍后再试。"}}]';
    }}
  }}
}}
"""


@dataclass
class Cluster:
    """The production topology on free local ports; `name` prefixes its databases, Redis keys and queue."""

    workdir: Path
    name: str = "kefu"
    rasa_processes: int = 2
    rasa_workers: int = 1
    action_workers: int = 2
    services: Services = field(default_factory=Services)
    port: int = 0  # nginx; 0 = a free port
    rasa_ports: List[int] = field(default_factory=list)
    api_token: Optional[str] = None
    with_desk: bool = False
    fresh: bool = False  # drop and recreate this cluster's databases
    extra_env: Dict[str, str] = field(default_factory=dict)
    rest_settings: Dict = field(default_factory=dict)  # over credentials.yml's REST channel settings (benches)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.rasa_ports = self.rasa_ports or [free_port() for _ in range(self.rasa_processes)]
        self.url = f"http://127.0.0.1:{self.port}"
        self.business_db, self.tracker_db = f"{self.name}_business", f"{self.name}_tracker"
        self.db_url = self.services.pg_url(self.business_db)
        self.events_queue = f"{self.name}_events"
        self.env = {**os.environ, "DATABASE_URL": self.db_url, "RASA_TELEMETRY_ENABLED": "false",
                    "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", **self.extra_env}
        self.env.pop("KEFU_EVALUATING_STORIES", None)
        self.actions = ActionServer(free_port(), {**self.env, "SANIC_WORKERS": str(self.action_workers)},
                                    self.workdir / "actions.log")
        self.rasa: Dict[int, subprocess.Popen] = {}
        self.nginx: Optional[subprocess.Popen] = None
        self.desk: Optional[DeskServer] = None

    # ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Databases (migrated, demo data), endpoints, credentials, nginx config."""
        from kefu import demo_data, migrate
        from kefu.db import session_scope

        self.services.check()
        self.services.create_database(self.business_db, fresh=self.fresh)
        self.services.create_database(self.tracker_db, fresh=self.fresh)
        migrate.upgrade(self.db_url)
        with session_scope(self.db_url) as session:
            demo_data.seed(session)
        (self.workdir / "endpoints.yml").write_text(yaml.safe_dump(endpoints(
            self.services, action_port=self.actions.port, tracker_db=self.tracker_db,
            key_prefix="".join(ch for ch in self.name if ch.isalnum()) + "lock", events_queue=self.events_queue)))
        base = yaml.safe_load((PROJECT_ROOT / "credentials.yml").read_text(encoding="utf-8")) or {}
        widget = base.get("kefu.channels.socketio.SocketIOInput")
        if isinstance(widget, dict):  # agent replies reach a widget connected to another process
            widget["redis_url"] = self.services.redis_url
        if self.rest_settings:
            base["kefu.channels.rest.RestInput"] = {**(base.get("kefu.channels.rest.RestInput") or {}),
                                                    **self.rest_settings}
        (self.workdir / "credentials.yml").write_text(yaml.safe_dump(base, allow_unicode=True))
        (self.workdir / "nginx-tmp").mkdir(exist_ok=True)
        (self.workdir / "nginx.conf").write_text(nginx_conf(self.workdir, self.port, self.rasa_ports))

    def start_rasa(self, port: int) -> None:
        log = self.workdir / f"rasa-{port}.log"
        command = [str(VENV_BIN / "rasa"), "run", "-m", str(MODEL), "--endpoints", str(self.workdir / "endpoints.yml"),
                   "--credentials", str(self.workdir / "credentials.yml"), "--port", str(port)]
        if self.api_token:
            command += ["--enable-api", "--auth-token", self.api_token]
        # behind nginx: Sanic takes the client address from X-Forwarded-For (per-IP rate limits, logs); the channels'
        # rate limits are kept in Redis, shared by all Rasa processes of this cluster
        env = {**self.env, "SANIC_WORKERS": str(self.rasa_workers), "SANIC_PROXIES_COUNT": "1",
               REDIS_URL_ENV: self.services.redis_url, PREFIX_ENV: self.name}
        self.rasa[port] = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT,
                                           env=env)

    def wait_rasa(self, port: int) -> None:
        wait_http(f"http://127.0.0.1:{port}/webhooks/rest/", self.rasa[port], self.workdir / f"rasa-{port}.log",
                  timeout=600)

    def start(self) -> "Cluster":
        try:
            return self._start()
        except BaseException:
            self.stop()  # leave no orphan process behind
            raise

    def _start(self) -> "Cluster":
        self.prepare()
        self.actions.start()
        for port in self.rasa_ports:  # load the models side by side
            self.start_rasa(port)
        for port in self.rasa_ports:
            self.wait_rasa(port)
        self.nginx = subprocess.Popen([NGINX, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"),
                                       "-g", "daemon off;"], stdout=(self.workdir / "nginx.out").open("a"),
                                      stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/webhooks/rest/", self.nginx, self.workdir / "nginx-error.log", timeout=20)
        if self.with_desk:
            self.desk = DeskServer(self.workdir / "desk", self.db_url, self.url, self.api_token).start()
        return self

    def kill_rasa(self, port: int) -> None:
        """Kill one Rasa process abruptly (SIGKILL), as a crash would."""
        proc = self.rasa.get(port)
        if proc and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        if self.desk:
            self.desk.stop()
        if self.nginx and self.nginx.poll() is None:
            self.nginx.terminate()
            self.nginx.wait(timeout=10)
        for proc in self.rasa.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.rasa.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.actions.stop()

    def drop(self) -> None:
        """Remove this cluster's databases and event queue (tests, benchmarks)."""
        for name in (self.business_db, self.tracker_db):
            self.services.drop_database(name)
        self.services.delete_queue(self.events_queue)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kefu.cluster", description="run the production profile")
    parser.add_argument("--port", type=int, default=5000, help="nginx (the customers' entry point)")
    parser.add_argument("--rasa-ports", default="5005,5015", help="one Rasa process per port")
    parser.add_argument("--rasa-workers", type=int, default=1, help="Sanic workers per Rasa process")
    parser.add_argument("--action-workers", type=int, default=2)
    parser.add_argument("--name", default="kefu", help="prefix of the databases, Redis keys and queue")
    args = parser.parse_args(argv)
    token_file = PROJECT_ROOT / "var" / "rasa_token"
    token = os.environ.get("RASA_TOKEN") or (token_file.read_text().strip() if token_file.exists() else None)
    cluster = Cluster(PROJECT_ROOT / "var" / "prod", name=args.name, port=args.port,
                      rasa_ports=[int(p) for p in args.rasa_ports.split(",")], rasa_workers=args.rasa_workers,
                      action_workers=args.action_workers, api_token=token, with_desk=True)
    try:
        cluster.start()
    except ServiceMissing as error:
        sys.exit(f"make run-prod: {error}")
    print(f"production profile up: customers → {cluster.url} (nginx) → Rasa on {cluster.rasa_ports}; "
          f"desk {cluster.desk.url}; business DB {cluster.business_db}, tracker DB {cluster.tracker_db}", flush=True)
    try:
        while all(p.poll() is None for p in cluster.rasa.values()):
            time.sleep(1)
        print("a Rasa process exited; stopping", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
