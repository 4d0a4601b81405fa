"""The conda environment and pyproject.toml pin the same packages at the same versions."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    py_pins = _pins(declared)
    assert len(py_pins) == len(declared), "every runtime and dev dependency is pinned with =="
    yml_lines = [line.strip().lstrip("-").strip() for line in (ROOT / "environment.yml").read_text().splitlines()
                 if line.strip().startswith("- ") and "==" in line]
    assert _pins(yml_lines) == py_pins


def test_hce_relevant_pins():
    """HCE moves with OpenCV's approxPolyDP; the metric oracle needs numpy < 2.3.5 and scikit-image < 0.26."""
    pins = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert pins["opencv-python-headless"] == "4.12.0.88"
    assert tuple(int(x) for x in pins["numpy"].split(".")[:2]) < (2, 3)
    assert tuple(int(x) for x in pins["scikit-image"].split(".")[:2]) < (0, 26)
