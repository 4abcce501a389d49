# Two commands matter: `make run` (serve the assistant) and `make test` (every test).
SHELL := /bin/bash
export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONWARNINGS := ignore
export SQLALCHEMY_SILENCE_UBER_WARNING := 1

UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv/bin
RASA := $(VENV)/rasa
MODEL := models/kefu.tar.gz

.PHONY: run run-prod test install system-packages data train shell bench clean

$(UV):
	python3 -m pip install --user --quiet uv

install: $(UV)
	$(UV) sync --frozen --extra dev
	npm ci --no-audit --no-fund --silent

# Debian packages the tests need: Chromium for the browser tests (driven by Playwright, no browser download),
# a CJK font so screenshots and report charts show Chinese, nginx for the production profile.
SYSTEM_PKGS := chromium fonts-wqy-microhei nginx-light
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@test -x /usr/bin/chromium -a -x /usr/sbin/nginx -a -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || { \
	  echo "installing Debian's $(SYSTEM_PKGS) for the tests"; \
	  $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PKGS) >/dev/null \
	  || { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PKGS) >/dev/null; }; \
	  $(SUDO) service nginx stop >/dev/null 2>&1 || true; }
	@test -x /usr/bin/chromium || { echo "FAIL: /usr/bin/chromium is missing" >&2; exit 1; }
	@test -x /usr/sbin/nginx || { echo "FAIL: /usr/sbin/nginx is missing" >&2; exit 1; }

# business database: migrate, load the demo data into an empty DB, build the spaCy pipeline
data: install
	$(VENV)/kefu seed
	$(VENV)/kefu build-spacy --output models/spacy_zh

train: data
	$(RASA) train --domain domain --out models --fixed-model-name kefu

run: train
	scripts/run.sh

# production profile: 2 Rasa processes behind nginx (:5000), PostgreSQL, Redis, RabbitMQ (docs/deployment.md)
run-prod: train
	@test -x /usr/sbin/nginx || $(SUDO) apt-get install -y --no-install-recommends nginx-light >/dev/null
	$(VENV)/python -m kefu.cluster

shell: train
	scripts/run.sh shell

test: train system-packages
	scripts/test.sh

bench: train
	$(VENV)/python bench/run_all.py

clean:
	rm -rf models results var/test .pytest_cache
