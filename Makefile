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

.PHONY: run test install browser data train shell bench clean

$(UV):
	python3 -m pip install --user --quiet uv

install: $(UV)
	$(UV) sync --frozen --extra dev
	npm ci --no-audit --no-fund --silent

# The browser tests drive Debian's Chromium through Playwright (no browser download); a CJK font lets
# screenshots and report charts show Chinese.
BROWSER_PKGS := chromium fonts-wqy-microhei
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium -a -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || { \
	  echo "installing Debian's $(BROWSER_PKGS) for the browser tests"; \
	  $(SUDO) apt-get install -y --no-install-recommends $(BROWSER_PKGS) >/dev/null \
	  || { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends $(BROWSER_PKGS) >/dev/null; }; }
	@test -x /usr/bin/chromium || { echo "FAIL: /usr/bin/chromium is missing" >&2; exit 1; }

# business database: migrate, load the demo data into an empty DB, build the spaCy pipeline
data: install
	$(VENV)/kefu seed
	$(VENV)/kefu build-spacy --output models/spacy_zh

train: data
	$(RASA) train --domain domain --out models --fixed-model-name kefu

run: train
	scripts/run.sh

shell: train
	scripts/run.sh shell

test: train browser
	scripts/test.sh

bench: train
	$(VENV)/python bench/run_all.py

clean:
	rm -rf models results var/test .pytest_cache
