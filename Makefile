# dissam: `make reproduce` (the notebook series on the smoke profile) and `make test` set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dissam-setup
PROFILE ?= smoke

.PHONY: setup reproduce reproduce-portable test test-lib test-notebooks test-browser lab bench gpu-check check-cpu clean

setup: $(STAMP)

# The library, the notebook stack ([notebooks]: JupyterLab, papermill, widgets, Voila), the tests ([dev]),
# HQ-SAM ([hq]: segment_anything_hq and the timm it imports) and the ONNX export / onnxruntime backend ([onnx]).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,notebooks,hq,onnx]"
	@touch $(STAMP)

# Tests: one OpenMP thread that sleeps instead of spinning while it waits. With another job on the cores,
# spinning threads made the test suite 10-15x slower here; the tests' tensors are tiny anyway. (Training
# keeps the default: passive waiting made a smoke training step 1.5x slower on a quiet machine.)
reproduce: setup
	$(PY) -m dissam reproduce --profile $(PROFILE)

# The same series with portable numerics (dissam.numerics: oneDNN off, ATen AVX2 kernels, MKL's COMPATIBLE
# branch, 2 threads): the same bits on every x86-64 CPU with AVX2, at several times the training time
# (README, "Numerics: the same bits on every CPU"). Runs and figures go to runs/$(PROFILE)-portable/.
reproduce-portable: setup
	$(PY) -m dissam reproduce --profile $(PROFILE) --numerics portable

test: setup
	bash scripts/ensure_chromium.sh
	DISSAM_PROFILE=tiny OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider -n auto

test-lib: setup
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest tests -m "not slow and not browser" -n auto

test-notebooks: setup
	DISSAM_PROFILE=tiny $(PY) -m pytest notebooks --nbval-lax

gpu-check: setup
	$(PY) -m dissam check --profile paper

check-cpu: setup
	$(PY) -m dissam check --profile paper --device cpu --out runs/check-cpu

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: setup
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_refiner.py
	$(PY) benchmarks/bench_interactive.py

clean:
	rm -rf runs .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
