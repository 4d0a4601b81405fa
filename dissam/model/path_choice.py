"""Which inference path a predictor takes on this machine: eager or :func:`optimize_for_inference`'s.

The optimised path is not faster everywhere (on an AVX2-only CPU it was slower than eager at full width),
so ``DisSam`` does not assume it: :func:`choose_inference_path` times eager and the optimised
path once per machine, network and input size, keeps the faster (:func:`choose_path`: the optimised
path only when it beats eager by more than :data:`TIE_MARGIN`) and caches the choice in memory and in
the user's cache folder. The evaluation tables (:func:`dissam.repro.runs.load_run`) stay on the optimised path
always: a timed choice can differ between two runs on a loaded machine, and eager's maps differ from
the optimised path's by ~1e-7, enough to move a saved uint8 prediction by one level now and then and so,
rarely, a digit of a table that must be the same in every run.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..cpuinfo import cpu_id
from ..fileio import atomic_write_bytes
from .inference import optimize_for_inference, predict_prob

# The optimised path is no speed-up everywhere: its gain depends on the CPU (AVX2 vs AVX-512/AMX), the
# network's width and the input size, from slower than eager to 2-3x faster (docs/benchmarks.md,
# "Inference on the CPU"). So the path is chosen per machine and input size by timing both once.
INFERENCE_PATHS = ("eager", "optimised")
TIE_MARGIN = 0.10  # another path must beat eager by more than 10% to be chosen (timing noise is ~5%)
_CHOICES: dict[str, dict] = {}  # this process's choices, by path_key


def choose_path(timings: Mapping[str, float], margin: float = TIE_MARGIN, default: str = "eager") -> str:
    """The path to use, from measured seconds per forward: the fastest, unless it beats ``default``
    (the simplest path, eager) by no more than ``margin`` (a fraction) -- a near-tie keeps ``default``,
    so timing noise never trades eager for a path that is not clearly faster."""
    if not timings:
        raise ValueError("choose_path needs at least one timed path")
    bad = {k: v for k, v in timings.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"timings must be finite positive seconds, got {bad}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    best = min(timings, key=lambda k: timings[k])
    if default not in timings:
        return best
    return best if timings[best] < (1 - margin) * timings[default] else default


def time_paths(candidates: Mapping[str, Callable[[], object]], repeats: int = 3) -> dict[str, float]:
    """Median seconds per call of each candidate: one warm-up call each (oneDNN builds its kernels on
    the first call), then ``repeats`` rounds alternating the candidates, so load on the machine hits all
    alike."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(max(1, int(repeats))):
        for k, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def path_key(model: nn.Module, size: int, threads: int | None = None, device: str | torch.device = "cpu",
             cpu: str | None = None) -> str:
    """What a choice depends on: the CPU (model name and flags) or GPU, torch's version, the network
    (class, width, input channels), the input size and the thread count. Not the weights."""
    device = torch.device(device)
    if cpu is None:
        if device.type == "cuda":
            cpu = torch.cuda.get_device_name(device)
        else:
            cpu = cpu_id()
    config = getattr(model, "config", None) or {}
    return json.dumps({"device": f"{device.type}: {cpu}", "torch": torch.__version__,
                       "model": type(model).__name__, "width": config.get("width"),
                       "in_ch": config.get("in_ch"), "size": int(size),
                       "threads": int(torch.get_num_threads() if threads is None else threads)}, sort_keys=True)


def default_cache_file() -> Path:
    """``$DISSAM_CACHE_DIR`` (else ``$XDG_CACHE_HOME/dissam``, else ``~/.cache/dissam``) / inference_paths.json."""
    root = os.environ.get("DISSAM_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dissam"
    return Path(root) / "inference_paths.json"


def _read_cache(path: Path | None) -> dict[str, dict]:
    """The on-disk choices; a missing, unreadable or malformed file is an empty cache (it is only a hint)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and v.get("path") in INFERENCE_PATHS}


def _write_cache(path: Path | None, key: str, entry: dict) -> None:
    if path is None:
        return

    data = _read_cache(path)
    data[key] = entry
    try:
        atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode(), durable=False)
    except OSError:
        pass  # a read-only home: the choice is still kept in memory for this process


def build_path(model: nn.Module, path: str) -> nn.Module:
    """The module for ``path``: ``eager`` = ``model`` itself in eval mode, ``optimised`` =
    :func:`optimize_for_inference` (a copy). Run either through :func:`predict_prob`."""
    if path == "eager":
        return model.eval()
    if path == "optimised":
        return optimize_for_inference(model)
    raise ValueError(f"inference path must be one of {INFERENCE_PATHS}, not {path!r}")


def choose_inference_path(model: nn.Module, size: int, in_ch: int | None = None,
                          cache_file: Path | None | str = "default", timer: Callable[..., dict] = time_paths,
                          margin: float = TIE_MARGIN) -> tuple[nn.Module, dict]:
    """The faster of eager and the optimised path for ``model`` at ``size``^2 (batch 1) on this machine:
    ``(module to run with predict_prob, choice)``, ``choice`` = ``{"path", "timings", "source", "key"}``
    with ``source`` "timed", "memory" or "disk". Timed once per :func:`path_key` on a dummy input (the
    weights do not change the time) and remembered for the process and, unless ``cache_file`` is None,
    in a JSON file under the user's cache folder, so later processes skip the timing. bf16 is never a
    candidate: it is an opt-in that changes the outputs (~1e-2)."""
    if cache_file == "default":
        cache_file = default_cache_file()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    key = path_key(model, size, device=device)
    entry, source = _CHOICES.get(key), "memory"
    if entry is None:
        entry, source = _read_cache(Path(cache_file) if cache_file else None).get(key), "disk"
    if entry is not None:
        _CHOICES[key] = entry
        return build_path(model, entry["path"]), {**entry, "source": source, "key": key}
    channels = int(in_ch or (getattr(model, "config", None) or {}).get("in_ch", 5))
    x = torch.rand(1, channels, int(size), int(size), generator=torch.Generator().manual_seed(0)).to(device)
    modules = {path: build_path(model, path) for path in INFERENCE_PATHS}

    def run(module: nn.Module) -> Callable[[], object]:
        def call() -> object:
            out = predict_prob(module, x)
            if out.device.type == "cuda":
                torch.cuda.synchronize(out.device)
            return out
        return call

    timings = {k: float(v) for k, v in timer({k: run(m) for k, m in modules.items()}).items()}
    entry = {"path": choose_path(timings, margin), "timings": timings}
    _CHOICES[key] = entry
    _write_cache(Path(cache_file) if cache_file else None, key, entry)
    return modules[entry["path"]], {**entry, "source": "timed", "key": key}
