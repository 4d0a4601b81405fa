"""Packaging: pyproject.toml declares ranges; constraints.txt (the lock) pins exact versions inside them and
is what `make setup`, CI and the conda environment install. The library and CLI work without the notebook
stack (``pip install dissam`` without extras); ``onnx`` and ``onnxruntime`` are the ``[onnx]`` extra,
imported only by the export and the onnxruntime backend."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
_SPEC = importlib.util.spec_from_file_location("dissam_lock", ROOT / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(lock)

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


def _requirements(*groups: str) -> list[Requirement]:
    """The runtime dependencies and the named extras, without the extras' references to each other."""
    extras = PROJECT["optional-dependencies"]
    texts = PROJECT["dependencies"] + [req for g in groups for req in extras[g] if not req.startswith("dissam[")]
    return [Requirement(text) for text in texts]


def _names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(req.name) for req in requirements}


ALL = ("notebooks", "dev", "hq", "onnx")
LOCK = lock.read_lock()


def test_pyproject_declares_ranges_and_the_lock_pins_exact_versions():
    """pyproject.toml: ranges (no exact pins, every requirement bounded below); constraints.txt: one
    ``name==version`` per distribution, dissam itself not among them, pip and setuptools locked too."""
    for req in _requirements(*ALL):
        operators = {spec.operator for spec in req.specifier}
        assert "==" not in operators and "===" not in operators, f"{req}: an exact pin belongs in constraints.txt"
        assert operators & {">=", ">", "~="}, f"{req}: give the tested version as a lower bound"
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.\-]*==[0-9][^\s;=]*", line) for line in lines), "name==version lines only"
    assert len(LOCK) == len(lines), "a distribution is locked twice"
    assert "dissam" not in LOCK and {"pip", "setuptools"} <= set(LOCK)


def test_lock_satisfies_the_ranges():
    """Every requirement of dissam and its extras is locked, at a version its range admits."""
    for req in _requirements(*ALL):
        name = canonicalize_name(req.name)
        assert name in LOCK, f"{name} is required by pyproject.toml but not in constraints.txt"
        assert req.specifier.contains(LOCK[name], prereleases=True), \
            f"constraints.txt pins {name}=={LOCK[name]}, outside pyproject.toml's {req.specifier}"


def test_setup_and_conda_install_the_lock_and_ci_runs_make_test():
    makefile = (ROOT / "Makefile").read_text()
    setup = re.search(r'install --quiet -c constraints\.txt -e "\.\[([a-z,]+)\]"', makefile)
    assert setup and set(setup.group(1).split(",")) == set(ALL)
    assert re.search(r"install --quiet -c constraints\.txt pip\n", makefile), "pip itself comes from the lock"
    assert re.search(r"^\$\(STAMP\): .*constraints\.txt", makefile, re.MULTILINE), "a new lock re-runs setup"
    yml = [line.strip() for line in (ROOT / "environment.yml").read_text().splitlines()]
    assert "- -c constraints.txt" in yml
    extras = next(line for line in yml if line.startswith("- -e ."))
    assert set(re.search(r"\[([a-z,]+)\]", extras).group(1).split(",")) == set(ALL)
    assert not [line for line in yml if "==" in line], "environment.yml takes its versions from constraints.txt"
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)


@pytest.mark.skipif(not (Path(sys.prefix) / ".dissam-setup").exists(),
                    reason="checks an environment that `make setup` built (its stamp is in sys.prefix)")
def test_the_environment_make_setup_built_is_exactly_the_lock():
    """Every distribution dissam and its extras reach here is locked, at the installed version, and the lock
    holds nothing else: a new dependency (or an upgrade) without `make lock` fails here."""
    installed = {name: version for name, version in lock.closure().items() if name != "dissam"}
    assert installed == LOCK, {n: (installed.get(n), LOCK.get(n)) for n in set(installed) | set(LOCK)
                               if installed.get(n) != LOCK.get(n)}


def test_notebook_stack_is_an_extra_and_dev_includes_it():
    runtime = _names(_requirements())
    stack = {canonicalize_name(name) for name in NOTEBOOK_STACK} | {"pytest", "hypothesis"}
    assert not runtime & stack, f"runtime dependencies that belong in an extra: {sorted(runtime & stack)}"
    extras = PROJECT["optional-dependencies"]
    notebooks = _names([Requirement(r) for r in extras["notebooks"]])
    assert {"jupyterlab", "papermill", "ipykernel", "ipywidgets", "jupyter-bbox-widget", "voila"} <= notebooks
    assert "dissam[notebooks]" in extras["dev"]
    assert {"pytest", "nbval", "playwright"} <= _names([Requirement(r) for r in extras["dev"] if r != "dissam[notebooks]"])
    assert _names([Requirement(r) for r in extras["onnx"]]) == {"onnx", "onnxruntime"}


def test_hce_relevant_pins():
    """HCE moves with OpenCV's approxPolyDP (4.13 and 4.14 give 95 for the official 96 on a reference pair of
    test_metrics.py, hence pyproject's < 4.13); the metric oracle (pysodmetrics 1.6.2) needs numpy < 2.3.5
    and scikit-image < 0.26: the lock keeps the versions the tables were made with."""
    assert LOCK["opencv-python-headless"] == "4.12.0.88"
    opencv = next(req for req in _requirements() if req.name == "opencv-python-headless")
    assert not opencv.specifier.contains("4.13.0.92"), "OpenCV 4.13/4.14 change HCE on a reference pair"
    assert LOCK["pysodmetrics"] == "1.6.2"
    assert Version(LOCK["numpy"]) < Version("2.3.5") and Version(LOCK["scikit-image"]) < Version("0.26")


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
