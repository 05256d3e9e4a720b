# `make demo` and `make test` work on a fresh machine: both create the virtualenv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/trilla demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

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

clean-venv:
	rm -rf $(VENV)
