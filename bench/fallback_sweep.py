"""Tune the FallbackClassifier: sweep threshold and ambiguity threshold over raw DIET rankings.

Inputs (never trained on): the dev split `tests/nlu_dev/` (every message has a real intent) and
`tests/fallback/unclear.txt` (messages a human agent would ask to clarify). For each setting it
prints the in-scope accuracy counting fallbacks as errors, the in-scope fallback rate, the accuracy
of the accepted in-scope messages, and the share of unclear messages caught.

    .venv/bin/python bench/fallback_sweep.py [--model models/kefu.tar.gz]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path
from typing import List, Tuple

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
ROOT = Path(__file__).resolve().parent.parent


def load_heldout() -> List[Tuple[str, str]]:
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(ROOT / "tests" / "nlu_dev"))
    return [(m.get("text"), m.get("intent")) for m in data.intent_examples]


def load_unclear() -> List[str]:
    lines = (ROOT / "tests" / "fallback" / "unclear.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


async def rankings(model: str, texts: List[str]) -> List[List[Tuple[str, float]]]:
    from rasa.core.agent import Agent

    agent = Agent.load(model)
    out = []
    for text in texts:
        parsed = await agent.parse_message(text)
        ranking = [(r["name"], r["confidence"]) for r in parsed["intent_ranking"] if r["name"] != "nlu_fallback"]
        out.append(ranking)
    return out


def falls_back(ranking: List[Tuple[str, float]], threshold: float, ambiguity: float) -> bool:
    top = ranking[0][1]
    second = ranking[1][1] if len(ranking) > 1 else 0.0
    return top < threshold or (top - second) < ambiguity


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "models" / "kefu.tar.gz"))
    args = parser.parse_args()
    heldout = load_heldout()
    unclear = load_unclear()
    ranked = asyncio.run(rankings(args.model, [t for t, _ in heldout] + unclear))
    ranked_in, ranked_unclear = ranked[: len(heldout)], ranked[len(heldout):]
    print(f"held-out messages: {len(heldout)}, unclear messages: {len(unclear)}")
    print(f"{'threshold':>9} {'ambig':>6} {'accuracy':>9} {'fallback%':>9} {'acc|accepted':>12} {'unclear caught':>14}")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        for ambiguity in (0.0, 0.05, 0.08, 0.1, 0.15):
            correct = fallbacks = accepted_correct = 0
            for (_, gold), ranking in zip(heldout, ranked_in):
                if falls_back(ranking, threshold, ambiguity):
                    fallbacks += 1
                elif ranking[0][0] == gold:
                    correct += 1
                    accepted_correct += 1
            accepted = len(heldout) - fallbacks
            caught = sum(falls_back(r, threshold, ambiguity) for r in ranked_unclear)
            print(f"{threshold:>9.2f} {ambiguity:>6.2f} {correct / len(heldout):>9.3f} {fallbacks / len(heldout):>9.3f} "
                  f"{(accepted_correct / accepted if accepted else 0):>12.3f} {caught / len(unclear):>14.3f}")


if __name__ == "__main__":
    main()
