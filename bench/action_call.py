"""What one remote action call costs the Rasa side and the action server, by how the request is sent.

Starts the `make run` stack (kefu.stack.RasaStack, seeded SQLite) with its action server, has one sender talk
`--turns` messages of `bench/rest_latency.py`'s order conversation, reads that tracker back over Rasa's HTTP API,
and opens one more order-query turn on it. Then this process calls the order form's validator
(`validate_order_form`) on the action server the way the Rasa server does -- `RemoteAction.run` with
kefu.rasa_speedups applied -- `--calls` times from `--concurrency` tasks, with the events of the endpoint's
window (10 user messages) and with the validator's own (1, `events_window_turns_by_action` in endpoints.yml).

It prints, per call, the wall time, this process's CPU (payload, JSON, HTTP client: the Rasa server's share) and
the action server's CPU (read from /proc), and the request body's size. The two alternate for `--rounds`.

    .venv/bin/python bench/action_call.py [--turns 12] [--calls 400] [--concurrency 10] [--rounds 3]

Not a test: it prints numbers (docs/performance.md).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

import requests  # noqa: E402

from bench_stats import cpu_seconds  # noqa: E402
from rest_latency import QUERY, conversation, seeded_sqlite  # noqa: E402

from kefu import rasa_speedups  # noqa: E402
from kefu.stack import RasaStack, action_endpoint  # noqa: E402

TOKEN = "bench-action-call"


def process_cpu(pid: int) -> float:
    return cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def open_turn(stack: RasaStack, sender: str, turns: int):
    """The sender's tracker after `turns` messages, with one more order query parsed and the form about to
    validate it: what the Rasa server holds when it calls the validator in an order-query turn."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    for text, _ in conversation(turns):
        stack.say(sender, text)
    state = requests.get(f"{stack.url}/conversations/{sender}/tracker", params={"token": TOKEN}, timeout=30).json()
    domain = Domain.load(str(PROJECT_ROOT / "domain"))
    tracker = DialogueStateTracker.from_dict(sender, state["events"], domain.slots)
    last_query = next(e for e in reversed(tracker.events) if isinstance(e, UserUttered) and e.text == QUERY)
    tracker.update(UserUttered(QUERY, last_query.intent, last_query.entities, last_query.parse_data,
                               input_channel=last_query.input_channel))
    tracker.update(ActionExecuted("order_form"))
    return tracker, domain


async def measure(tracker, domain, endpoint_settings: dict, calls: int, concurrency: int, actions_pid: int):
    from rasa.core.actions.action import RemoteAction
    from rasa.core.channels.channel import CollectingOutputChannel
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator
    from rasa.utils.endpoints import EndpointConfig

    endpoint = EndpointConfig(**endpoint_settings)
    action = RemoteAction("validate_order_form", endpoint)
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    body = len(rasa_speedups.json_bytes(action._action_call_format(tracker, domain)))

    async def worker(count: int) -> None:
        for _ in range(count):
            await action.run(CollectingOutputChannel(), nlg, tracker, domain)

    await worker(5)  # connections open, action server warm
    wall, cpu, server = time.perf_counter(), time.process_time(), process_cpu(actions_pid)
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    done = calls // concurrency * concurrency
    result = ((time.perf_counter() - wall) * 1000 / done, (time.process_time() - cpu) * 1000 / done,
              (process_cpu(actions_pid) - server) * 1000 / done, body)
    kept = endpoint.__dict__.get("_kefu_session")  # kefu.rasa_speedups keeps one client session per event loop
    if kept is not None:
        await kept[1].close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rasa_speedups.apply()
    with tempfile.TemporaryDirectory(prefix="kefu-action-call-") as tmp:
        stack = RasaStack(Path(tmp), seeded_sqlite(Path(tmp) / "kefu.db"), api_token=TOKEN).start()
        try:
            tracker, domain = open_turn(stack, "bench-action-call", args.turns)
            configured = action_endpoint(stack.actions.port)
            ten = {k: v for k, v in configured.items() if k != rasa_speedups.WINDOW_BY_ACTION_SETTING}
            variants = [("window 10 (endpoint)", ten), ("window 1 (validator's own)", configured)]
            print(f"validate_order_form after {args.turns} turns; {args.calls} calls from {args.concurrency} tasks "
                  f"per variant; ms per call")
            print(f"{'events sent':<26} | {'body KB':>7} | {'wall':>6} | {'Rasa side CPU':>13} | {'action server CPU':>17}")
            for _ in range(args.rounds):
                for name, settings in variants:
                    wall, cpu, server, body = asyncio.run(
                        measure(tracker, domain, settings, args.calls, args.concurrency, stack.actions.proc.pid))
                    print(f"{name:<26} | {body / 1024:7.1f} | {wall:6.2f} | {cpu:13.2f} | {server:17.2f}")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
