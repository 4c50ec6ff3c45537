# nexec: every tool runs from the project's own virtual environment.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8080

.PHONY: install run test lint typecheck pytest test-browser console-screenshots bench schemas docs \
	nats-auth clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nexec needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

run: install
	$(BIN)/nexec dev --port $(PORT)

test: lint typecheck pytest test-browser

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest --ignore=tests/browser

# The web console in headless Chromium, the distribution's (`apt-get install chromium`;
# NEXEC_CHROMIUM=path for another): skipped without one, unless NEXEC_BROWSER_REQUIRED=1
# (.ci/run), where that fails. Screenshots of each view go to pytest's temporary folder.
test-browser: install
	$(BIN)/pytest tests/browser

# The same tests, writing the screenshots into docs/images/ for docs/console.md.
console-screenshots: install
	NEXEC_SCREENSHOTS_DIR=docs/images NEXEC_BROWSER_REQUIRED=1 $(BIN)/pytest tests/browser -q

bench: install
	$(BIN)/python -m bench

# NATS users, mutual TLS and job signing keys for deploy/nats/ (all new, into a
# git-ignored directory; refuses to replace earlier output unless NATS_AUTH_FLAGS=--replace):
#   make nats-auth AGENTS="web1.example.com,role:web db1.example.com" TLS_HOSTS="nats1.example.com"
AGENTS ?= $(shell hostname),env:dev
TLS_HOSTS ?=  # empty: nexec nats-auth's default, localhost 127.0.0.1 ::1 and this host
NATS_AUTH_FLAGS ?=
nats-auth: install
	$(BIN)/nexec nats-auth --out deploy/nats/generated $(NATS_AUTH_FLAGS) \
		$(foreach agent,$(AGENTS),--agent $(agent)) $(foreach host,$(TLS_HOSTS),--tls-host $(host))

schemas: install
	$(BIN)/python -m schemas docs/schemas

# The settings tables of docs/operations.md and deploy/examples/*.toml, from the settings models.
docs: install
	$(BIN)/python -m tests.settings_docs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
