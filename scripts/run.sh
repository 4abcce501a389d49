#!/usr/bin/env bash
# Start the action server and the Rasa server (REST + socket.io on :5005).
# `scripts/run.sh shell` starts the action server and `rasa shell` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export RASA_TELEMETRY_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS=ignore SQLALCHEMY_SILENCE_UBER_WARNING=1
mkdir -p var/log

.venv/bin/rasa run actions --port 5055 --actions actions >var/log/actions.log 2>&1 &
ACTIONS_PID=$!
trap 'kill $ACTIONS_PID 2>/dev/null || true' EXIT INT TERM
echo "action server started (pid $ACTIONS_PID, log var/log/actions.log)"

if [[ "${1:-}" == "shell" ]]; then
  .venv/bin/rasa shell -m models/kefu.tar.gz --endpoints endpoints.yml
else
  echo "Rasa is loading the model (about a minute); then try:"
  echo "  curl -s localhost:5005/webhooks/rest/webhook -d '{\"sender\":\"demo\",\"message\":\"查一下订单202411010001\"}'"
  .venv/bin/rasa run -m models/kefu.tar.gz --endpoints endpoints.yml --credentials credentials.yml \
    --port "${RASA_PORT:-5005}" --cors "*"
fi
