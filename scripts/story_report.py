"""Print the outcome of `rasa test core` (stories passed/failed, action accuracy)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

results = Path(sys.argv[1])
report = json.loads((results / "story_report.json").read_text())
conversation = report.get("conversation_accuracy", {})
total = conversation.get("total", 0)
correct = conversation.get("correct", 0)
print(f"test stories: {correct}/{total} passed; action accuracy {report.get('accuracy', 0):.3f}")
failed = (results / "failed_test_stories.yml").read_text() if (results / "failed_test_stories.yml").exists() else ""
sys.exit(0 if total and correct == total else 1)
