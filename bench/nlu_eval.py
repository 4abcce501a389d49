"""Held-out NLU quality and parse latency of the trained model, in-process.

Loads models/kefu.tar.gz with `rasa.core.agent.Agent.load` and parses every
example of the held-out split tests/nlu_test/ (never trained on) one at a time with
`Agent.parse_message` -- the same call path the server uses for a user message,
without HTTP, the tracker store or the policies.

Two views of the intent predictions are printed:

* **served** -- what the assistant acts on: when the FallbackClassifier fires, the
  prediction is `nlu_fallback`, which counts as wrong.  Accuracy, macro-F1 and
  weighted-F1 are taken over the gold intents of the split (a fallback is a
  missed prediction of the gold intent, not a class of its own).  Also printed:
  the share of messages that fell back, and the accuracy over the messages that
  did not fall back.
* **rasa test nlu** -- the fallback undone (the top DIET intent is used), scores
  over the union of gold and predicted labels, as `rasa test nlu` /
  scripts/nlu_report.py report them; printed for comparison with `make test`.

Latency: wall time of each `parse_message` call after a short warm-up, p50/p95/p99
in ms.  Not a test: it only prints numbers.

    .venv/bin/python bench/nlu_eval.py [--model models/kefu.tar.gz] [--nlu tests/nlu_test] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Dict, Sequence

from bench_stats import percentile  # noqa: E402  (bench/ is the script's folder)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
warnings.filterwarnings("ignore")

FALLBACK = "nlu_fallback"


def per_label_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> Dict[str, Dict[str, float]]:
    rows = {}
    for label in labels:
        tp = sum(1 for g, p in zip(gold, pred) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, pred) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, pred) if g == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return rows


def scores(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> Dict[str, object]:
    rows = per_label_f1(gold, pred, labels)
    total = sum(r["support"] for r in rows.values())
    return {
        "accuracy": sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else None,
        "macro_f1": sum(r["f1"] for r in rows.values()) / len(rows) if rows else None,
        "weighted_f1": sum(r["f1"] * r["support"] for r in rows.values()) / total if total else None,
        "per_intent": rows,
    }


async def evaluate(model: Path, nlu: Path, warmup: int) -> Dict[str, object]:
    from rasa.core.agent import Agent
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(nlu))
    examples = [(m.get("text"), m.get("intent")) for m in data.intent_examples]
    if not examples:
        raise SystemExit(f"no intent examples under {nlu}")

    started = time.perf_counter()
    agent = Agent.load(str(model))
    load_s = time.perf_counter() - started

    for text, _ in examples[:warmup]:
        await agent.parse_message(text)

    gold, served, undone, confidences, latencies = [], [], [], [], []
    for text, intent in examples:
        t0 = time.perf_counter()
        result = await agent.parse_message(text)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        predicted = (result.get("intent") or {}).get("name")
        ranking = [r["name"] for r in result.get("intent_ranking") or [] if r.get("name") != FALLBACK]
        gold.append(intent)
        served.append(predicted)
        # what `rasa test nlu` scores: the fallback undone, i.e. the best non-fallback intent
        undone.append(ranking[0] if predicted == FALLBACK and ranking else predicted)
        confidences.append((result.get("intent") or {}).get("confidence"))

    gold_labels = sorted(set(gold))
    served_scores = scores(gold, served, gold_labels)
    kept = [(g, p) for g, p in zip(gold, served) if p != FALLBACK]
    fell_back = len(gold) - len(kept)
    rasa_labels = sorted(set(gold) | set(undone))
    rasa_scores = scores(gold, undone, rasa_labels)
    return {
        "model": str(model), "nlu": str(nlu), "examples": len(gold), "intents": len(gold_labels),
        "model_load_s": round(load_s, 1),
        "served": served_scores,
        "fallback_share": fell_back / len(gold),
        "fallback_count": fell_back,
        "accuracy_excluding_fallback": (sum(g == p for g, p in kept) / len(kept)) if kept else None,
        "rasa_test_nlu": rasa_scores,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99), "mean": sum(latencies) / len(latencies),
                       "max": max(latencies)},
        "fallback_by_gold_intent": dict(Counter(g for g, p in zip(gold, served) if p == FALLBACK).most_common()),
    }


def report(r: Dict[str, object]) -> str:
    s, t, lat = r["served"], r["rasa_test_nlu"], r["latency_ms"]
    excl = r["accuracy_excluding_fallback"]
    out = [
        f"held-out NLU evaluation: {r['examples']} messages, {r['intents']} intents ({r['nlu']})",
        f"model {r['model']} (loaded in {r['model_load_s']} s)",
        "",
        "served (nlu_fallback counts as wrong; scores over the gold intents):",
        f"  intent accuracy              {s['accuracy']:.3f}",
        f"  macro-F1                     {s['macro_f1']:.3f}",
        f"  weighted-F1                  {s['weighted_f1']:.3f}",
        f"  fell back (nlu_fallback)     {r['fallback_share']:.1%} ({r['fallback_count']}/{r['examples']})",
        f"  accuracy excl. fallbacks     {'n/a' if excl is None else f'{excl:.3f}'}",
        "as `rasa test nlu` scores it (fallback undone):",
        f"  intent accuracy              {t['accuracy']:.3f}",
        f"  macro-F1                     {t['macro_f1']:.3f}",
        f"  weighted-F1                  {t['weighted_f1']:.3f}",
        "parse latency per message (in-process Agent.parse_message, sequential):",
        f"  p50 {lat['p50']:.1f} ms   p95 {lat['p95']:.1f} ms   p99 {lat['p99']:.1f} ms   "
        f"mean {lat['mean']:.1f} ms   max {lat['max']:.1f} ms",
        "",
        "per-intent (served view), worst F1 first:",
        f"  {'intent':<20}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>5}{'f1 (rasa test)':>16}{'fallbacks':>11}",
    ]
    fallbacks = r["fallback_by_gold_intent"]
    for name, row in sorted(s["per_intent"].items(), key=lambda kv: (kv[1]["f1"], kv[0])):
        rasa_f1 = t["per_intent"].get(name, {}).get("f1", 0.0)
        out.append(f"  {name:<20}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}"
                   f"{row['support']:>5}{rasa_f1:>16.3f}{fallbacks.get(name, 0):>11}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "models" / "kefu.tar.gz")
    parser.add_argument("--nlu", type=Path, default=PROJECT_ROOT / "tests" / "nlu_test")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured parses before timing (default 10)")
    parser.add_argument("--json", action="store_true", help="also print the full result as one JSON line")
    args = parser.parse_args()
    if not args.model.exists():
        parser.error(f"no trained model at {args.model}: run `make train` first")
    # the pipeline refers to models/spacy_zh and data/dict relative to the project
    os.chdir(PROJECT_ROOT)
    # warnings and errors to stderr; without this, structlog prints every parse (debug) to stdout
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    from rasa.utils.log_utils import configure_structlog
    configure_structlog(logging.WARNING)
    result = asyncio.run(evaluate(args.model.resolve(), args.nlu.resolve(), args.warmup))
    print(report(result))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
