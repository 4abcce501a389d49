#!/usr/bin/env bash
# Start the action server, the agent desk and the Rasa server (REST + socket.io on :5005).
# `scripts/run.sh shell` starts the action server and `rasa shell` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export RASA_TELEMETRY_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS=ignore SQLALCHEMY_SILENCE_UBER_WARNING=1
mkdir -p var/log

# Rasa's HTTP API is only ever opened with a token: RASA_TOKEN, or one generated once into var/
if [[ -z "${RASA_TOKEN:-}" ]]; then
  [[ -s var/rasa_token ]] || (umask 077 && .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(32))" > var/rasa_token)
  RASA_TOKEN=$(cat var/rasa_token)
fi
export RASA_TOKEN
RASA_PORT="${RASA_PORT:-5005}"

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT INT TERM
.venv/bin/rasa run actions --port 5055 --actions actions >var/log/actions.log 2>&1 &
PIDS+=($!)
echo "action server started (log var/log/actions.log)"

if [[ "${1:-}" == "shell" ]]; then
  .venv/bin/rasa shell -m models/kefu.tar.gz --endpoints endpoints.yml
  exit
fi

# credentials.yml plus the channels whose secrets are in the environment (Telegram, WeChat)
.venv/bin/python -m kefu.channels.credentials credentials.yml var/credentials.yml

.venv/bin/python -m kefu.desk.app --port "${DESK_PORT:-5006}" --rasa-url "http://127.0.0.1:$RASA_PORT" \
  >var/log/desk.log 2>&1 &
PIDS+=($!)
echo "agent desk: http://localhost:${DESK_PORT:-5006}  (demo agents A001–A004, supervisor S001; password kefu123)"
echo "dashboard:  http://localhost:${DESK_PORT:-5006}/dashboard  (supervisors; Rasa events from var/events.db)"
echo "web chat:   http://localhost:${DESK_PORT:-5006}/chat  (embed: <script src=\"http://HOST:${DESK_PORT:-5006}/widget.js\" data-server=\"http://HOST:$RASA_PORT\" defer></script>)"
echo "Rasa is loading the model (about a minute); then try:"
echo "  curl -s localhost:$RASA_PORT/webhooks/rest/webhook -d '{\"sender\":\"demo\",\"message\":\"查一下订单202411010001\"}'"
.venv/bin/rasa run -m models/kefu.tar.gz --endpoints endpoints.yml --credentials var/credentials.yml \
  --port "$RASA_PORT" --cors "*" --enable-api --auth-token "$RASA_TOKEN"
