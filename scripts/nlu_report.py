"""Print per-intent precision/recall/F1 from `rasa test nlu` results; fail under a macro-F1 floor."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--min-macro-f1", type=float, default=0.0)
    parser.add_argument("--summary", action="store_true", help="only the overall line")
    args = parser.parse_args()
    report = json.loads((args.results / "intent_report.json").read_text())
    intents = {k: v for k, v in report.items() if isinstance(v, dict) and "f1-score" in v
               and k not in ("micro avg", "macro avg", "weighted avg")}
    if not args.summary:
        print(f"{'intent':<20}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>6}")
        for name, row in sorted(intents.items(), key=lambda kv: kv[1]["f1-score"]):
            print(f"{name:<20}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1-score']:>8.3f}{row['support']:>6}")
    macro = report["macro avg"]["f1-score"]
    accuracy = report.get("accuracy", report.get("micro avg", {}).get("f1-score"))
    total = sum(int(row["support"]) for row in intents.values())
    # `rasa test nlu` scores DIET's intent with the FallbackClassifier undone;
    # bench/nlu_eval.py also reports the served view (fallback counted as an error)
    print(f"{args.results.name}: intent accuracy {accuracy:.3f}, macro-F1 {macro:.3f} over {len(intents)} intents, "
          f"{total} messages")
    entity_file = args.results / "DIETClassifier_report.json"
    if entity_file.exists() and not args.summary:
        ents = json.loads(entity_file.read_text())
        for name in ("order_id", "phone", "tracking_number"):
            if name in ents:
                print(f"entity {name:<16} f1 {ents[name]['f1-score']:.3f} (n={ents[name]['support']})")
    if macro < args.min_macro_f1:
        print(f"FAIL: macro-F1 {macro:.3f} below the floor {args.min_macro_f1:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
