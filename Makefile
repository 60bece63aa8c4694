# `make demo` and `make test` set up .venv on first use; nothing else needs installing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are the releases this project is tested with.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: install test test-fast demo quality figures lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# Every test, the slow end-to-end ones included (they are what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

# Unit tests only, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not slow" $(PYTEST_ARGS)

# The main job: train on the synthetic Texture AD, per-subclass table, OpenVINO export and inference.
demo: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.demo $(DEMO_ARGS)

# AdaptedMoE vs its SimpleNet-baseline setting vs anomalib's Padim, unseen-subclass means.
quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py $(QUALITY_ARGS)

# The README's figures (docs/*.png): trains the demo model, then plots routing, TTA and per-expert maps.
figures: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.viz.make_figures --output docs/

lint: $(STAMP)
	$(BIN)/python -m ruff check anomalib_adapted_moe tests benchmarks

clean:
	rm -rf $(VENV) results .pytest_cache
