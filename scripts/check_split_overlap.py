"""Drop test-split examples that duplicate or nearly duplicate a training example.

Prints only counts, so whoever runs it does not learn what the test split contains.
    .venv/bin/python scripts/check_split_overlap.py tests/nlu_test/test_split.yml [--apply]
"""
from __future__ import annotations

import re
import sys
from difflib import SequenceMatcher
from pathlib import Path

from rasa.shared.nlu.training_data.loading import load_data

ROOT = Path(__file__).resolve().parent.parent


def norm(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", re.sub(r"\d+", "0", text.lower()))


def main() -> int:
    target = Path(sys.argv[1])
    train = {norm(m.get("text")) for m in load_data(str(ROOT / "data" / "nlu")).intent_examples}
    near = set()
    for message in load_data(str(target)).intent_examples:
        text = norm(message.get("text"))
        if text in train or any(len(t) > 3 and SequenceMatcher(None, text, t).ratio() >= 0.85 for t in train):
            near.add(message.get("text"))
    print(f"{len(near)} test examples duplicate or nearly duplicate a training example")
    if "--apply" in sys.argv and near:
        kept = []
        for line in target.read_text(encoding="utf-8").splitlines():
            example = line.strip()[2:] if line.strip().startswith("- ") else None
            plain = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", example) if example else None
            if plain is not None and plain in near:
                continue
            kept.append(line)
        target.write_text("\n".join(kept) + "\n", encoding="utf-8")
        print("removed them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
