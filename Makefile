# `make demo` and `make test` set up .venv on first use; nothing else needs installing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are the releases this project is tested with.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Where torch comes from: PyPI's default wheels carry CUDA (about 5.5 GB installed); for a CPU-only machine set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu (about 200 MB).
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
# Free disk the first install needs (the venv is about 6.6 GiB with PyPI's CUDA torch wheels); checked before it.
MIN_FREE_GIB ?= $(if $(TORCH_INDEX),3,8)
PYTEST_ARGS ?=
# Test workers: one per CPU this process may use (nproc; xdist's "auto" counts physical cores, one where two vCPUs are
# one core's threads), at most four (each imports torch, anomalib and OpenVINO); PYTEST_WORKERS=0 runs every test in
# one process. worksteal hands a finished worker the queued tests of a busy one (the slowest take a minute).
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null || echo auto)
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --maxprocesses 4 --dist worksteal

export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: install test test-fast demo quality speed precision thresholds benchmark figures lint clean

install: $(STAMP)

# the hook and its module are copied into the venv, not linked: an edit installs again
$(STAMP): pyproject.toml src/anomalib_adapted_moe_cli.pth src/anomalib_adapted_moe_cli.py
	@$(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('.').free / 2**30; \
	sys.exit(f'make: only {free:.1f} GiB free here; the environment needs about $(MIN_FREE_GIB) GiB (torch with CUDA \
	wheels is most of it). Free some space, or set TORCH_INDEX for the CPU-only wheels (see the README).') \
	if free < $(MIN_FREE_GIB) else None"
	@# a venv without pip (an install stopped while venv set it up) is made again rather than used
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# Every test, the slow end-to-end ones included (they are what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -ra $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# Unit tests only, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not slow" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The main job: train on the synthetic Texture AD, per-subclass table, OpenVINO export and inference.
demo: $(STAMP)
	$(BIN)/python -W ignore::FutureWarning -m anomalib_adapted_moe.demo $(DEMO_ARGS)

# The quick comparison: AdaptedMoE vs its SimpleNet-baseline setting vs anomalib's Padim, through the benchmark
# harness (results/quality/benchmarks.md); `make benchmark` runs all seven models and the ablations.
quality: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.benchmark compare --models AdaptedMoE "AdaptedMoE SimpleNet-baseline" Padim \
		--output results/quality $(QUALITY_ARGS)

# Latency (torch, OpenVINO, Supersimplenet, Glass), training time and peak RSS against issue 5's targets;
# writes results/speed/speed.json and docs/performance.md. SPEED_ARGS=--quick for a smoke run.
speed: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.benchmark speed $(SPEED_ARGS)

# OpenVINO at every precision this CPU has (f32, bf16, f16, FP16 weights, INT8): differences to torch, AUROC, speed;
# writes the precision section of docs/performance.md (and docs/precision.json). Timed: run it alone.
precision: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.benchmark precision $(PRECISION_ARGS)

# One threshold per category: anomalib's AUROC on post-processed scores vs raw, pooled vs per-subclass AUROC,
# F1 at the category threshold; writes docs/thresholds.md (synthetic set; THRESHOLDS_ARGS for other data).
thresholds: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.benchmark thresholds --markdown docs/thresholds.md $(THRESHOLDS_ARGS)

# AdaptedMoE vs anomalib's built-in models and the paper's ablations; resumable; writes docs/benchmarks.md.
benchmark: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.benchmark compare --report-dir docs $(BENCHMARK_ARGS)
	$(BIN)/python -m anomalib_adapted_moe.benchmark ablate all --report-dir docs $(BENCHMARK_ARGS)

# The README's figures docs/{routing_embeddings,routing_matrix,tta_shift,per_expert_maps}.png: trains the demo
# model, then plots them (the contact sheets docs/synthetic_*.png come from
# python -m anomalib_adapted_moe.data.synthetic.contact_sheet --out docs/).
figures: $(STAMP)
	$(BIN)/python -m anomalib_adapted_moe.viz.make_figures --output docs/

lint: $(STAMP)
	$(BIN)/python -m ruff check anomalib_adapted_moe tests notebooks

clean:
	rm -rf $(VENV) results .pytest_cache
