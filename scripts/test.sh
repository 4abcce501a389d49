#!/usr/bin/env bash
# Every test: data validation, pytest (unit + real servers), story tests, held-out NLU evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
export RASA_TELEMETRY_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS=ignore SQLALCHEMY_SILENCE_UBER_WARNING=1
RASA=.venv/bin/rasa
mkdir -p results
MODEL=models/kefu.tar.gz
[[ -f $MODEL ]] || { echo "no trained model at $MODEL (run: make train)" >&2; exit 1; }

echo "== rasa data validate"
$RASA data validate --domain domain >results/validate.log 2>&1 || { cat results/validate.log; exit 1; }

echo "== story tests (tests/stories)"
rm -rf results/core
KEFU_EVALUATING_STORIES=1 $RASA test core --model $MODEL --stories tests/stories --out results/core \
  --fail-on-prediction-errors >results/core.log 2>&1 || { tail -50 results/core.log; cat results/core/failed_test_stories.yml 2>/dev/null; exit 1; }
.venv/bin/python scripts/story_report.py results/core

echo "== NLU test split (tests/nlu_test: written apart from the training data, never trained or tuned on)"
rm -rf results/nlu_test results/nlu_dev
$RASA test nlu --model $MODEL --nlu tests/nlu_test --out results/nlu_test >results/nlu_test.log 2>&1 || { tail -50 results/nlu_test.log; exit 1; }
.venv/bin/python scripts/nlu_report.py results/nlu_test --min-macro-f1 "${KEFU_MIN_MACRO_F1:-0.80}"

echo "== NLU dev split (tests/nlu_dev: never trained on, but used for error analysis and tuning)"
$RASA test nlu --model $MODEL --nlu tests/nlu_dev --out results/nlu_dev >results/nlu_dev.log 2>&1 || { tail -50 results/nlu_dev.log; exit 1; }
.venv/bin/python scripts/nlu_report.py results/nlu_dev --summary

echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider tests
