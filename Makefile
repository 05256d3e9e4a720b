# `make demo` and `make test` work on a fresh machine: both create the virtualenv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
# name==version lines with names as PyPI normalizes them (pip freeze writes Jinja2, the lock jinja2), pip's own left out
NORMALIZE := python3 -c "import re, sys; print(*sorted(re.sub(r'[-_.]+', '-', n).lower() + '==' + v.split()[0] for n, v in (l.strip().split('==', 1) for l in sys.stdin if '==' in l) if n.lower() not in ('pip', 'setuptools', 'wheel')), sep=chr(10))"
FAST := not browser and not postgres and not deepaas and not labelstudio and not slow
DEEPAAS_VENV ?= .venv-deepaas
DEEPAAS_STAMP := $(DEEPAAS_VENV)/.installed
LABELSTUDIO_VENV ?= .venv-labelstudio
LABELSTUDIO_STAMP := $(LABELSTUDIO_VENV)/.installed
CHROMIUM := /usr/bin/chromium
PG_CTL := $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
PURELIB := import sysconfig; print(sysconfig.get_path("purelib"))

.PHONY: demo test test-fast test-latest test-oldest lint lock docs docs-serve install deepaas labelstudio system bench bench-serve clean-venv

# Every package at the version the lock names (CI's green run is reproducible), then trilla itself.
$(STAMP): pyproject.toml constraints.txt $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# The lock, resolved again by pip-tools from pyproject.toml's ranges and constraints.txt's pins (run it to move
# to newer versions on purpose; `make test-latest` shows first whether they pass). trilla itself is not locked.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --upgrade --extra dev --extra export --extra postgres -c constraints.txt --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml
	sed -i '/^trilla @ /,+1d' $(LOCK)

# The newest versions pyproject.toml's ranges allow, resolved fresh into a virtualenv of their own, and the fast
# tests on them: the next pandas 3 is found here before users find it. What differs from the lock is printed.
test-latest:
	test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -c constraints.txt -e '.[dev]'
	.venv-latest/bin/python -m pip check
	diff <(grep '==' $(LOCK) | $(NORMALIZE)) <(.venv-latest/bin/python -m pip freeze --exclude-editable | $(NORMALIZE)) || true
	.venv-latest/bin/lint-imports
	.venv-latest/bin/python -m pytest -q -n auto --dist loadfile -m "$(FAST)"

# The lowest versions pyproject.toml's ranges allow for every direct dependency (uv's lowest-direct resolution;
# torch and torchvision stay at constraints.txt's pins), in a virtualenv of their own, and the fast tests on them:
# a lower bound is only claimed where it runs.
test-oldest: $(STAMP)
	test -x .venv-oldest/bin/python || $(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/python -m pip install --quiet --upgrade pip
	$(BIN)/uv pip compile pyproject.toml --quiet --extra dev --extra export --extra postgres --resolution lowest-direct \
		-c constraints.txt --python-version 3.11 | grep -v '^trilla' > .venv-oldest/oldest.txt
	.venv-oldest/bin/python -m pip install --quiet -r .venv-oldest/oldest.txt
	.venv-oldest/bin/python -m pip install --quiet --no-deps -e .
	.venv-oldest/bin/python -m pip check
	.venv-oldest/bin/python -m pytest -q -n auto --dist loadfile -m "$(FAST)"

# Lint, import order and types: ruff over everything, mypy over the public API (pyproject.toml says which).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# DEEPaaS pins old aiohttp, marshmallow and webargs, so it gets a virtualenv of its own. That one reads
# trilla and torch from $(VENV) (a .pth appends $(VENV)'s site-packages after its own, so its pins win)
# instead of installing torch a second time.
$(DEEPAAS_STAMP): $(STAMP) constraints.txt
	test -x $(DEEPAAS_VENV)/bin/python || $(PYTHON) -m venv $(DEEPAAS_VENV)
	$(DEEPAAS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEEPAAS_VENV)/bin/python -m pip install --quiet -c constraints.txt deepaas
	echo "import site; site.addsitedir('$$($(BIN)/python -c '$(PURELIB)')')" > "$$($(DEEPAAS_VENV)/bin/python -c '$(PURELIB)')/trilla-main-venv.pth"
	touch $(DEEPAAS_STAMP)

deepaas: $(DEEPAAS_STAMP)

# Label Studio (the server and its SDK) pins much of what trilla uses (numpy, pandas, Django's tree): the
# tests start a real Label Studio from a virtualenv of its own, which reads nothing of $(VENV).
$(LABELSTUDIO_STAMP): constraints.txt
	test -x $(LABELSTUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABELSTUDIO_VENV)
	$(LABELSTUDIO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LABELSTUDIO_VENV)/bin/python -m pip install --quiet -c constraints.txt label-studio label-studio-sdk 'sentry-sdk<3'
	touch $(LABELSTUDIO_STAMP)

labelstudio: $(LABELSTUDIO_STAMP)

# What the browser and database tests need from Debian: Chromium (driven by Playwright) and PostgreSQL
# (the tests start their own server in a temporary folder).
system:
	test -x $(CHROMIUM) && test -n "$(PG_CTL)" || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium postgresql)

demo: $(STAMP)
	$(BIN)/trilla demo

# Lint first (ruff, the design's walls as import-linter contracts, mypy), then the whole suite: one pytest
# worker per core; a test file stays on one worker (its module fixtures are built once).
test: system $(STAMP) $(DEEPAAS_STAMP) $(LABELSTUDIO_STAMP) lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# The contributor's loop: what needs nothing but trilla's own virtualenv (no apt-get, no second virtualenv,
# no browser or database) and no long training (the `slow` marker). `make test` stays the whole suite.
test-fast: lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "$(FAST)"

# The docs site from docs/ (MkDocs, Material theme, no font or script from a CDN; the reference pages are
# generated from the code by docs/hooks.py): built into site/, or served on loopback while it is edited.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/train_speed.py --case gru --samples 320 --epochs 2 --rounds 3
	$(BIN)/python benchmarks/audio_features.py --clips 64 --rounds 5
	$(BIN)/python benchmarks/digits_quality.py
	$(BIN)/python benchmarks/feature_cache.py
	$(BIN)/python benchmarks/transfer.py
	$(BIN)/python benchmarks/embedding_stream.py
	$(BIN)/python benchmarks/guitar_bass_grid.py
	$(BIN)/python benchmarks/embedding_train_speed.py
	$(BIN)/python benchmarks/long_audio.py

# trilla serve against deepaas-run on the same runs; the load generator is wrk.
bench-serve: $(STAMP) $(DEEPAAS_STAMP)
	command -v wrk >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q wrk)
	$(BIN)/python benchmarks/serve_speed.py

clean-venv:
	rm -rf $(VENV) $(DEEPAAS_VENV) $(LABELSTUDIO_VENV)
