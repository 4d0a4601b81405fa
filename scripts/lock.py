"""Write constraints.txt: the exact version of every distribution that ``dissam[dev,notebooks,hq,onnx]``
needs, as installed in the running environment (the venv ``make setup`` built), plus pip and setuptools.

    .venv/bin/python scripts/lock.py            # rewrite constraints.txt from .venv (`make lock`)
    .venv/bin/python scripts/lock.py --check    # exit 1 if constraints.txt differs from what it would write

The set is the closure of the requirements of dissam and its four extras over the installed metadata
(environment markers evaluated here, extras followed), so a tool installed by hand beside them (a linter,
say) stays out. Platform-specific packages that torch's Linux x86_64 build pulls in (nvidia-*, cuda-*,
triton) are locked as installed; on another platform pip never asks for them and their lines do nothing.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
ROOTS = ("dissam[dev,notebooks,hq,onnx]", "pip")
HEADER = """\
# Exact versions: what `make setup` installs (pip install -c constraints.txt -e ".[dev,notebooks,hq,onnx]"),
# CI runs, environment.yml installs and every committed table and figure was made with. pyproject.toml
# holds the ranges; tests/test_packaging.py checks that these pins satisfy them. Written by
# `make lock` (scripts/lock.py) from the venv on Python {python}, Linux x86_64; the nvidia-*, cuda-* and
# triton lines are torch's CUDA build's own dependencies there (ignored on other platforms).
"""


def closure(roots: tuple[str, ...] = ROOTS) -> dict[str, str]:
    """Canonical name -> installed version of every distribution the ``roots`` requirements reach."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} is required (by {req}) but not installed: run `make setup` first")
        found[name] = dist.version
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(dep)
    return found


def lock_text(pins: dict[str, str]) -> str:
    """The file's text: the header, then ``name==version`` sorted by name, dissam itself left out."""
    python = ".".join(map(str, sys.version_info[:2]))
    lines = [f"{name}=={version}" for name, version in sorted(pins.items()) if name != "dissam"]
    return HEADER.format(python=python) + "\n".join(lines) + "\n"


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Canonical name -> version of every ``name==version`` line of the lock."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with constraints.txt, write nothing")
    args = parser.parse_args(argv)
    text = lock_text(closure())
    if args.check:
        same = LOCK.exists() and LOCK.read_text() == text
        print("constraints.txt is up to date" if same else "constraints.txt differs from this environment")
        return 0 if same else 1
    LOCK.write_text(text)
    print(f"wrote {LOCK} ({text.count('==')} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
