# mailsync — the commands a newcomer needs. `make run` first, `make test` second.
# Python of the Lambda runtime (template.yaml): .venv, the tests, the runner and `make build` use it.
# infra/find-python.sh finds it (PATH, pyenv, ~/.pyenv/versions) or says what to install;
# PY=/path/to/python3.13 overrides. A .venv built with another Python is recreated.
PYTHON_VERSION := 3.13
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-py$(PYTHON_VERSION)
# Lock files with hashes (`make lock` rewrites them; commit them on purpose). The dev lock
# pins pyproject's dependencies and the dev extra; the layer lock pins what the Lambda layer
# ships, at the same versions (compiled with the dev lock as constraints), for every platform
# (x86_64 and the aarch64 wheels of the arm64 layer).
DEV_LOCK   := requirements-dev.lock
LAYER_LOCK := layers/mailsync/requirements.lock
LOCK_ARGS  ?= --upgrade
PYTEST_ARGS ?=

.PHONY: help install lock dovecot imap-servers run demo test unit integration e2e lint format build bench fuzz load clean

help:
	@echo "make run    start the local runner on 127.0.0.1:$${PORT:-3000} (moto + API + scheduler + worker)"
	@echo "make demo   the runner plus a throwaway Dovecot with sample mail"
	@echo "make test   install everything (Dovecot included) and run unit, integration and e2e tests"
	@echo "make lint   ruff + mypy + cfn-lint;  make build  sam build (no Docker, arm64 layer)"
	@echo "make lock   re-resolve the lock files (requirements-dev.lock, layers/mailsync/requirements.lock)"
	@echo "make bench  performance benchmark (docs/performance.md); BENCH_ARGS=--quick for a smoke run"
	@echo "make fuzz   the reliability suite at full size: every crash-matrix point, more property/network/MIME"
	@echo "            examples, schemathesis in every phase (MAILSYNC_FUZZ_EXAMPLES, default 100)"
	@echo "make load   200 accounts on one runner for 10 min (LOAD_ACCOUNTS, LOAD_SECONDS, ...); report in build/load-report.json"

$(STAMP): pyproject.toml $(DEV_LOCK)
	@py="$$(infra/find-python.sh $(PYTHON_VERSION))" || exit 1; \
	if [ -x $(BIN)/python ] && ! $(BIN)/python -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$(PYTHON_VERSION)')" 2>/dev/null; then \
	  echo "$(VENV) was built with $$($(BIN)/python -V 2>&1 || echo a missing Python); recreating it with $$py"; \
	  rm -rf $(VENV); \
	fi; \
	test -x $(BIN)/python || { echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); }
	$(BIN)/python -m pip install -q --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@$(BIN)/python -m pip check >/dev/null || { $(BIN)/python -m pip check; \
	  echo "the lock does not satisfy pyproject.toml: run 'make lock' and commit the lock files"; exit 1; }
	touch $(STAMP)

# Re-resolve both locks (LOCK_ARGS=--upgrade: newest versions within pyproject's ranges;
# LOCK_ARGS="--upgrade-package pydantic" for one package; LOCK_ARGS= keeps what is pinned).
lock:
	test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv pip compile --quiet --universal --python-version $(PYTHON_VERSION) --generate-hashes \
	  --custom-compile-command "make lock" $(LOCK_ARGS) --extra dev pyproject.toml -o $(DEV_LOCK)
	$(BIN)/uv pip compile --quiet --universal --python-version $(PYTHON_VERSION) --generate-hashes \
	  --custom-compile-command "make lock" $(LOCK_ARGS) -c $(DEV_LOCK) layers/mailsync/requirements.txt -o $(LAYER_LOCK)
	@echo "locks updated: review 'git diff $(DEV_LOCK) $(LAYER_LOCK)', run make test, commit them"

install: $(STAMP)

dovecot:
	@infra/ensure-dovecot.sh

# Mailutils imap4d and Cyrus unpacked beside Dovecot (they conflict with it in apt).
imap-servers:
	@infra/ensure-imap-servers.sh

run: install
	$(BIN)/mailsync run

demo: install dovecot
	$(BIN)/mailsync demo

# Two workers (the machine's 2 cores), one test file per worker: a file's fixtures and
# servers stay together. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: install dovecot imap-servers
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

integration: install dovecot imap-servers
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

e2e: install dovecot
	$(BIN)/python -m pytest -m e2e $(PYTEST_ARGS)

# Long property-based runs: schemathesis with every phase and 100 examples per operation
# (MAILSYNC_FUZZ_EXAMPLES=N for another size); other long runs read MAILSYNC_FUZZ=1 too.
# Every linter runs (one failing does not hide the others' findings); fails if any failed.
lint: install
	@rc=0; \
	for cmd in "ruff check ." "ruff format --check ." "mypy" "cfn-lint template.yaml"; do \
	  echo "$(BIN)/$$cmd"; $(BIN)/$$cmd || { rc=1; echo "lint: $$cmd failed"; }; \
	done; exit $$rc

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

build:
	infra/sam-build.sh

# Performance evidence (issue 5): prints the table, writes bench/results/latest.json.
# BENCH_ARGS: --sizes 1000,10000 (default) | --quick | --skip-tools | --skip-api | --no-build | --profile
BENCH_ARGS ?=
bench: install dovecot
	$(BIN)/python -m bench $(BENCH_ARGS)

# Full sizes of the reliability suite (issue 14); `make test` runs deterministic samples.
# MAILSYNC_CRASH_ALL=1: every injection point of the Gmail/Graph crash matrix; MAILSYNC_FUZZ=1 and
# MAILSYNC_FUZZ_EXAMPLES: schemathesis (all phases), the property test, network-fault seeds, MIME mutations.
FUZZ_TESTS := tests/integration/test_crash_safety.py tests/integration/test_sync_property.py \
  tests/integration/test_network_faults.py tests/unit/test_mime_hostile.py tests/e2e/test_schemathesis.py
fuzz: install dovecot
	MAILSYNC_CRASH_ALL=1 MAILSYNC_FUZZ=1 MAILSYNC_FUZZ_EXAMPLES=$${MAILSYNC_FUZZ_EXAMPLES:-100} \
	  $(BIN)/python -m pytest -o timeout=7200 $(FUZZ_TESTS) $(PYTEST_ARGS)

# Load (issue 14): LOAD_ACCOUNTS Dovecot users on one `mailsync run`, mail flowing for
# LOAD_SECONDS, LOAD_DUPLICATES of the jobs delivered twice; prints the figures and writes
# LOAD_REPORT. `make test` runs the same test at 20 accounts for 20 s (tests/e2e/test_load.py).
LOAD_ACCOUNTS     ?= 200
LOAD_SECONDS      ?= 600
LOAD_POLL_SECONDS ?= 60
LOAD_WORKERS      ?= 4
LOAD_RATE         ?= 5
LOAD_DUPLICATES   ?= 0.1
LOAD_REPORT       ?= build/load-report.json
load: install dovecot
	LOAD_ACCOUNTS=$(LOAD_ACCOUNTS) LOAD_SECONDS=$(LOAD_SECONDS) LOAD_POLL_SECONDS=$(LOAD_POLL_SECONDS) \
	LOAD_WORKERS=$(LOAD_WORKERS) LOAD_RATE=$(LOAD_RATE) LOAD_DUPLICATES=$(LOAD_DUPLICATES) \
	LOAD_REPORT=$(abspath $(LOAD_REPORT)) $(BIN)/python -m pytest tests/e2e/test_load.py -q $(PYTEST_ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
