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

.PHONY: run test install data train shell bench clean

$(UV):
	python3 -m pip install --user --quiet uv

install: $(UV)
	$(UV) sync --frozen --extra dev

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

test: train
	scripts/test.sh

bench: train
	$(VENV)/python bench/run_all.py

clean:
	rm -rf models results var/test .pytest_cache
