"""What CPU this is: the model name and the vector-unit flags that decide which inference path is fast.

One place for it, so every benchmark prints the same line (:func:`cpu_line`) and the inference-path
cache (:mod:`dissam.model.inference`) keys its choices by the same identity (:func:`cpu_id`). On Linux
it reads ``/proc/cpuinfo``; elsewhere it falls back to :mod:`platform` (no flags then).
"""
from __future__ import annotations

import os
import platform
import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["FLAGS", "cpu_flags", "cpu_id", "cpu_line", "cpu_model", "parse_cpuinfo"]

FLAGS = ("avx2", "avx512f", "amx_tile")  # AVX2 / AVX-512 / AMX: oneDNN's kernels differ by these


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` text (keys as written there)."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if info:
                break  # end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


@lru_cache(maxsize=1)
def _info() -> dict[str, str]:
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {}


def cpu_model(info: dict[str, str] | None = None) -> str:
    """The CPU's model name, with family/model numbers when the name is generic (VMs often say only
    "Intel(R) Xeon(R) Processor")."""
    info = _info() if info is None else info
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']} model {info['model']})"
    return name


def cpu_flags(info: dict[str, str] | None = None) -> dict[str, bool]:
    """Which of :data:`FLAGS` the CPU reports (all False where no ``flags`` line is readable)."""
    info = _info() if info is None else info
    present = set(info.get("flags", "").split())
    return {flag: flag in present for flag in FLAGS}


def cpu_id(info: dict[str, str] | None = None) -> str:
    """Model name and flags in one string: what inference-path choices are cached under."""
    flags = cpu_flags(info)
    return cpu_model(info) + " [" + ",".join(f for f in FLAGS if flags[f]) + "]"


def cpu_line(threads: int | None = None) -> str:
    """One line for the top of every benchmark: model, flags, cores, and torch's version and threads
    when torch is loaded (a benchmark that does not use torch does not pay for importing it)."""
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in cpu_flags().items())
    line = f"CPU: {cpu_model()}; {flags}; {os.cpu_count()} logical cores"
    torch = sys.modules.get("torch")
    if torch is not None:
        threads = torch.get_num_threads() if threads is None else threads
        line += f", torch {torch.__version__} with {threads} threads"
    elif threads is not None:
        line += f", {threads} threads"
    return line
