"""The production profile's nginx (kefu.cluster.nginx_conf), run for real in front of two small HTTP servers that
stand in for the Rasa processes: customer traffic is spread over both; WeChat calls are routed by the user's
openid (WeChat's duplicate detection, button memory and rate limit are per user, in the process that took the
message), so each user keeps to one process, and the users of a process that is down go to the other."""
from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from kefu.cluster import NGINX, nginx_conf
from kefu.stack import free_port


class _Backend:
    """An HTTP server on a free port that answers every request with its own port."""

    def __init__(self) -> None:
        port = self.port = free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = str(port).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxied(tmp_path: Path):
    backends = [_Backend(), _Backend()]
    port = free_port()
    (tmp_path / "nginx-tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, port, [b.port for b in backends]))
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 10
    while True:
        try:
            requests.get(f"{url}/webhooks/rest/", timeout=1)
            break
        except requests.ConnectionError:
            assert time.time() < deadline and proc.poll() is None, "nginx did not start"
            time.sleep(0.1)
    yield url, backends
    proc.terminate()
    proc.wait(timeout=10)
    for backend in backends:
        backend.stop()


def _served_by(url: str, path: str, n: int = 12) -> Counter:
    return Counter(int(requests.post(f"{url}{path}", data=b"<xml/>", timeout=10).text) for _ in range(n))


def _wechat_path(openid: str) -> str:
    return f"/webhooks/wechat/webhook?signature=x&timestamp=1&nonce=2&openid={openid}"


OPENIDS = [f"o6_bmjrPTlm6_2sgVt7hMZOPf{n:03d}" for n in range(40)]


def test_each_wechat_user_keeps_to_one_process_and_users_are_spread(proxied):
    url, (first, second) = proxied
    homes = {}
    for openid in OPENIDS:
        served = _served_by(url, _wechat_path(openid), n=4)
        assert len(served) == 1, (openid, served)  # every message of a user: the same process
        homes[openid] = next(iter(served))
    assert set(homes.values()) == {first.port, second.port}  # and the users are spread over both
    assert set(_served_by(url, "/webhooks/rest/webhook")) == {first.port, second.port}


def test_wechat_users_of_a_process_that_is_down_go_to_the_other_and_the_rest_stay(proxied):
    url, (first, second) = proxied
    homes = {openid: next(iter(_served_by(url, _wechat_path(openid), n=1))) for openid in OPENIDS}
    first.stop()
    for openid in OPENIDS:
        assert _served_by(url, _wechat_path(openid), n=3) == Counter({second.port: 3})
    assert any(port == second.port for port in homes.values())  # those never moved
