"""Knowledge-base retrieval: accuracy on held-out paraphrases, latency, and Rasa's ResponseSelector.

    .venv/bin/python bench/kb_eval.py [--no-response-selector] [--tune]

* accuracy: top-1 / top-3 over tests/kb/heldout_queries.yml (customer phrasings written apart from
  the KB; none of them is a KB question or paraphrase);
* decisions: how often the bot answers / offers the top 3 / falls back with the shipped thresholds,
  and how often a direct answer is right;
* latency: p50/p95 per query on the real KB and on a 1,000-entry KB (the real entries plus
  generated distractors);
* the same held-out queries through Rasa's ResponseSelector trained on the same entries
  (question + paraphrases per entry), in the same run;
* the held-out queries are split alternately into a dev half (threshold tuning, `--tune` prints the
  grid) and a test half (every number below is on the test half).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

from bench_stats import percentile  # noqa: E402
from kefu.kb.entries import Entry, load_dir, load_synonyms  # noqa: E402
from kefu.kb.retrieval import HybridIndex  # noqa: E402
from kefu.kb.service import KnowledgeBase  # noqa: E402

KB_DIR = ROOT / "data" / "kb"
HELDOUT = ROOT / "tests" / "kb" / "heldout_queries.yml"


def heldout() -> List[Tuple[str, str]]:
    data = yaml.safe_load(HELDOUT.read_text(encoding="utf-8"))
    return [(q["query"], q["id"]) for q in data["queries"]]


def evaluate_index(index: HybridIndex, queries: List[Tuple[str, str]]) -> Dict[str, float]:
    top1 = top3 = 0
    latencies = []
    for query, gold in queries:
        start = time.perf_counter()
        hits = index.search(query, k=3)
        latencies.append((time.perf_counter() - start) * 1000)
        ids = [h.entry.id for h in hits]
        top1 += bool(ids) and ids[0] == gold
        top3 += gold in ids
    n = len(queries)
    return {"top1": top1 / n, "top3": top3 / n, "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95)}


def decisions(kb: KnowledgeBase, queries: List[Tuple[str, str]]) -> Dict[str, float]:
    counts = {"answer": 0, "clarify": 0, "miss": 0}
    answered_right = clarify_contains = 0
    for query, gold in queries:
        decision = kb.decide(query)
        counts[decision.kind] += 1
        if decision.kind == "answer" and decision.best.entry.id == gold:
            answered_right += 1
        if decision.kind == "clarify" and gold in [h.entry.id for h in decision.hits]:
            clarify_contains += 1
    n = len(queries)
    return {"answer": counts["answer"] / n, "clarify": counts["clarify"] / n, "miss": counts["miss"] / n,
            "answer_precision": answered_right / counts["answer"] if counts["answer"] else 0.0,
            "clarify_contains_gold": clarify_contains / counts["clarify"] if counts["clarify"] else 0.0}


def distractors(entries: List[Entry], total: int) -> List[Entry]:
    """Scale the KB to `total` entries with plausible variants (other product / region / time)."""
    rng = random.Random(7)
    words = ["手机", "空调", "冰箱", "羽绒服", "奶粉", "面霜", "耳机", "洗衣机", "图书", "生鲜", "新疆", "西藏",
             "海南", "香港", "企业采购", "会员", "plus会员", "大促期间", "预售商品", "二手商品", "海外购"]
    out = list(entries)
    i = 0
    while len(out) < total:
        base = entries[i % len(entries)]
        word = rng.choice(words)
        out.append(replace(base, id=f"scale-{len(out):04d}", question=f"{word}{base.question}",
                           paraphrases=tuple(f"{word} {p}" for p in base.paraphrases[:3]),
                           answer=f"（{word}）{base.answer}"))
        i += 1
    return out


def tune(kb: KnowledgeBase, dev: List[Tuple[str, str]]) -> None:
    """Threshold grid on the dev half of the held-out queries (the test half is reported)."""
    hits = [(kb.search(q, k=3), gold) for q, gold in dev]
    print(f"threshold grid on the dev half ({len(dev)} queries):")
    print(f"{'answer≥':>8} {'margin':>7} {'clarify≥':>9} {'answered':>9} {'ans.precision':>13} "
          f"{'clarified':>9} {'gold in 3':>9} {'missed':>7}")
    for answer in (0.45, 0.5, 0.55, 0.6, 0.65):
        for margin in (0.0, 0.05, 0.1):
            for clarify in (0.3, 0.35, 0.4):
                n_ans = right = n_cl = gold_in = miss = 0
                for h, gold in hits:
                    top = h[0].score if h else 0.0
                    lead = top - (h[1].score if len(h) > 1 else 0.0)
                    if top >= answer and lead >= margin:
                        n_ans += 1
                        right += h[0].entry.id == gold
                    elif top >= clarify:
                        n_cl += 1
                        gold_in += gold in [x.entry.id for x in h]
                    else:
                        miss += 1
                n = len(hits)
                print(f"{answer:>8.2f} {margin:>7.2f} {clarify:>9.2f} {n_ans / n:>9.3f} "
                      f"{(right / n_ans if n_ans else 0):>13.3f} {n_cl / n:>9.3f} "
                      f"{(gold_in / n_cl if n_cl else 0):>9.3f} {miss / n:>7.3f}")


def response_selector(entries: List[Entry], queries: List[Tuple[str, str]]) -> Dict[str, float]:
    """Train Rasa's ResponseSelector on the same entries and score the same held-out queries."""
    work = Path(tempfile.mkdtemp(prefix="kefu-rs-"))
    try:
        nlu = {"version": "3.1", "nlu": [{"intent": f"faq/{e.id}", "examples": "".join(f"- {t}\n" for t in e.texts())}
                                         for e in entries]}
        (work / "nlu.yml").write_text(yaml.safe_dump(nlu, allow_unicode=True, sort_keys=False), encoding="utf-8")
        domain = {"version": "3.1", "intents": ["faq"],
                  "responses": {f"utter_faq/{e.id}": [{"text": e.answer.replace("{", "(").replace("}", ")")}]
                                for e in entries}}
        (work / "domain.yml").write_text(yaml.safe_dump(domain, allow_unicode=True), encoding="utf-8")
        config = {"recipe": "default.v1", "language": "zh", "assistant_id": "kb-bench", "pipeline": [
            {"name": "JiebaTokenizer", "dictionary_path": str(ROOT / "data" / "dict")},
            {"name": "CountVectorsFeaturizer"},
            {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
            {"name": "DIETClassifier", "epochs": 1, "entity_recognition": False},
            {"name": "ResponseSelector", "epochs": 100, "retrieval_intent": "faq", "random_seed": 1}],
            "policies": []}
        (work / "config.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        start = time.perf_counter()
        env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}
        subprocess.run([str(Path(sys.executable).parent / "rasa"), "train", "nlu", "--nlu", "nlu.yml", "--config",
                        "config.yml", "--domain", "domain.yml", "--out", "models", "--fixed-model-name", "rs"],
                       cwd=work, env=env, check=True, capture_output=True)
        train_s = time.perf_counter() - start
        from rasa.core.agent import Agent

        agent = Agent.load(str(work / "models" / "rs.tar.gz"))

        async def run():
            top1 = top3 = 0
            latencies = []
            for query, gold in queries:
                t0 = time.perf_counter()
                parsed = await agent.parse_message(query)
                latencies.append((time.perf_counter() - t0) * 1000)
                ranking = parsed["response_selector"]["faq"]["ranking"]
                ids = [r["intent_response_key"].split("/", 1)[1] for r in ranking[:3]]
                top1 += bool(ids) and ids[0] == gold
                top3 += gold in ids
            return top1, top3, latencies

        top1, top3, latencies = asyncio.run(run())
        n = len(queries)
        return {"top1": top1 / n, "top3": top3 / n, "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                "train_s": train_s}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-response-selector", action="store_true")
    parser.add_argument("--tune", action="store_true")
    args = parser.parse_args()
    entries = load_dir(KB_DIR)
    synonyms = load_synonyms(KB_DIR)
    everything = heldout()
    dev, queries = everything[0::2], everything[1::2]
    print(f"knowledge base: {len(entries)} entries; held-out queries: {len(everything)} "
          f"({len(dev)} dev for threshold tuning, {len(queries)} test reported below)")
    kb = KnowledgeBase(KB_DIR)
    if args.tune:
        tune(kb, dev)
    hybrid = evaluate_index(HybridIndex(entries, synonyms), queries)
    print(f"hybrid (BM25 + char n-grams): top-1 {hybrid['top1']:.3f}  top-3 {hybrid['top3']:.3f}  "
          f"p50 {hybrid['p50_ms']:.2f} ms  p95 {hybrid['p95_ms']:.2f} ms")
    bm25_only = evaluate_index(HybridIndex(entries, synonyms, replace(HybridIndex([]).weights, char=0.0)), queries)
    char_only = evaluate_index(HybridIndex(entries, synonyms, replace(HybridIndex([]).weights, char=1.0)), queries)
    print(f"BM25 only: top-1 {bm25_only['top1']:.3f} top-3 {bm25_only['top3']:.3f}; "
          f"char n-grams only: top-1 {char_only['top1']:.3f} top-3 {char_only['top3']:.3f}")
    d = decisions(kb, queries)
    print(f"decisions with the shipped thresholds: answer {d['answer']:.1%} (right {d['answer_precision']:.1%}), "
          f"clarify {d['clarify']:.1%} (gold among the 3: {d['clarify_contains_gold']:.1%}), miss {d['miss']:.1%}")
    scaled = distractors(entries, 1000)
    big = evaluate_index(HybridIndex(scaled, synonyms), queries)
    print(f"1,000-entry KB: top-1 {big['top1']:.3f} top-3 {big['top3']:.3f}  latency p50 {big['p50_ms']:.2f} ms  "
          f"p95 {big['p95_ms']:.2f} ms")
    if not args.no_response_selector:
        rs = response_selector(entries, queries)
        print(f"Rasa ResponseSelector (same entries, trained {rs['train_s']:.0f} s): top-1 {rs['top1']:.3f}  "
              f"top-3 {rs['top3']:.3f}  p50 {rs['p50_ms']:.2f} ms  p95 {rs['p95_ms']:.2f} ms")


if __name__ == "__main__":
    main()
