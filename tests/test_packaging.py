"""Packaging: the conda environment and pyproject.toml pin the same packages at the same versions, and the
library and CLI work without the notebook stack (``pip install dissam`` without extras); ``onnx`` and
``onnxruntime`` are the ``[onnx]`` extra, imported only by the export and the onnxruntime backend."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# What `[notebooks]` and `[dev]` bring: none of it may be needed by `import dissam` or the CLI.
NOTEBOOK_STACK = ("jupyter", "jupyterlab", "jupyter_bbox_widget", "jupyter_client", "jupyter_core",
                  "jupyter_server", "notebook", "nbval", "nbformat", "nbclient", "nbconvert", "papermill",
                  "ipywidgets", "ipykernel", "IPython", "voila", "playwright")
# The [onnx] extra: only `dissam export` and the onnxruntime backend import it, when called.
ONNX_EXTRA = ("onnx", "onnxruntime")
# Modules that are notebook-only by design: the widget and the export of executed notebooks.
NOTEBOOK_ONLY = {"dissam.__main__", "dissam.widget", "dissam.repro.notebook_export"}

# Makes every import of the notebook stack fail as if it were not installed.
BLOCKER = f"""
import sys
BLOCKED = {NOTEBOOK_STACK!r}
for name in {ONNX_EXTRA!r}:  # as if never installed: import fails, importlib.util.find_spec gives None
    sys.modules[name] = None
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in BLOCKED or top.startswith("jupyter"):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by tests/test_packaging.py)", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def _requirements(*groups: str) -> list[str]:
    """The runtime dependencies and the named extras, without the extras' references to each other."""
    extras = PROJECT["optional-dependencies"]
    return PROJECT["dependencies"] + [req for g in groups for req in extras[g] if not req.startswith("dissam[")]


def test_environment_yml_matches_pyproject():
    declared = _requirements("notebooks", "dev", "hq", "onnx")
    py_pins = _pins(declared)
    assert len(py_pins) == len(declared), "every runtime and extra dependency is pinned with =="
    yml_lines = [line.strip().lstrip("-").strip() for line in (ROOT / "environment.yml").read_text().splitlines()
                 if line.strip().startswith("- ") and "==" in line]
    assert _pins(yml_lines) == py_pins


def test_notebook_stack_is_an_extra_and_dev_includes_it():
    runtime = {name.replace("_", "-") for name in _pins(PROJECT["dependencies"])}
    stack = {name.lower().replace("_", "-") for name in NOTEBOOK_STACK} | {"pytest", "hypothesis"}
    assert not runtime & stack, f"runtime dependencies that belong in an extra: {sorted(runtime & stack)}"
    notebooks = set(_pins(PROJECT["optional-dependencies"]["notebooks"]))
    assert {"jupyterlab", "papermill", "ipykernel", "ipywidgets", "jupyter-bbox-widget", "voila"} <= notebooks
    dev = PROJECT["optional-dependencies"]["dev"]
    assert "dissam[notebooks]" in dev and {"pytest", "nbval", "playwright"} <= set(_pins(dev))
    setup = re.search(r'install --quiet -e "\.\[([a-z,]+)\]"', (ROOT / "Makefile").read_text())
    assert setup and {"dev", "notebooks", "hq", "onnx"} <= set(setup.group(1).split(","))
    assert set(_pins(PROJECT["optional-dependencies"]["onnx"])) == {"onnx", "onnxruntime"}


def test_hce_relevant_pins():
    """HCE moves with OpenCV's approxPolyDP; the metric oracle needs numpy < 2.3.5 and scikit-image < 0.26."""
    pins = _pins(PROJECT["dependencies"])
    assert pins["opencv-python-headless"] == "4.12.0.88"
    assert tuple(int(x) for x in pins["numpy"].split(".")[:2]) < (2, 3)
    assert tuple(int(x) for x in pins["scikit-image"].split(".")[:2]) < (0, 26)


def _run_without_notebook_stack(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_blocker_blocks():
    result = _run_without_notebook_stack("import papermill")
    assert result.returncode != 0 and "blocked by tests/test_packaging.py" in result.stderr
    assert _run_without_notebook_stack("import onnxruntime").returncode != 0


def test_library_and_cli_import_without_notebook_stack():
    """Every library module imports, and `dissam --help` / `dissam predict --help` / `dissam export --help`
    run, with the notebook stack and the [onnx] extra uninstallable; `dissam reproduce` then says which
    extra to install."""
    code = f"""
import importlib, pkgutil, runpy
import dissam, dissam.cli
assert dissam.__file__.startswith({str(ROOT)!r}), dissam.__file__
for info in pkgutil.walk_packages(dissam.__path__, "dissam."):
    if info.name not in {sorted(NOTEBOOK_ONLY)!r}:
        importlib.import_module(info.name)
for argv in (["dissam", "--help"], ["dissam", "predict", "--help"], ["dissam", "export", "--help"]):
    sys.argv = argv
    try:
        runpy.run_module("dissam", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        assert exit.code in (0, None), (argv, exit.code)
from dissam.repro.reproduce import run_series
try:
    run_series("tiny")
except ImportError as err:
    print("REPRODUCE:", err)
"""
    result = _run_without_notebook_stack(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: dissam predict" in result.stdout and "--box" in result.stdout
    assert 'REPRODUCE:' in result.stdout and 'pip install "dissam[notebooks]"' in result.stdout
