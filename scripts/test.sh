#!/usr/bin/env bash
# Every test: data validation, pytest (unit + real servers), story tests, held-out NLU evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
export RASA_TELEMETRY_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS=ignore SQLALCHEMY_SILENCE_UBER_WARNING=1
mkdir -p results
MODEL=models/kefu.tar.gz
[[ -f $MODEL ]] || { echo "no trained model at $MODEL (run: make train)" >&2; exit 1; }

# rasa data validate, the story tests and both NLU splits: the Rasa CLI commands, in one process (one model load)
rm -rf results/core results/nlu_test results/nlu_dev
.venv/bin/python scripts/evaluate.py $MODEL || { cat results/core/failed_test_stories.yml 2>/dev/null; exit 1; }
.venv/bin/python scripts/story_report.py results/core
.venv/bin/python scripts/nlu_report.py results/nlu_test --min-macro-f1 "${KEFU_MIN_MACRO_F1:-0.80}"
.venv/bin/python scripts/nlu_report.py results/nlu_dev --summary

echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider tests
