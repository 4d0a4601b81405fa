"""A faster inference path for the refiner on CPU, with outputs equal to eager mode (1e-4).

``optimize_for_inference`` returns an eval-mode copy with every BatchNorm folded into the conv
before it, activations in channels_last and, on CPU in fp32, every conv replaced by a oneDNN conv with
a weight prepacked once (``mkldnn._reorder_convolution_weight``) and the ReLU fused into it
(``mkldnn._convolution_pointwise``, the kernel torch.compile's CPU backend emits). This removes a
weight reorder per conv call, the separate ReLU pass and ATen's fallback to its slow im2col conv for
small batch-1 inputs (most of the RSU blocks' deep levels). Measured on this 2-core CPU against eager
under inference_mode (benchmarks/bench_refiner.py, with another job loading the CPU): fold +
channels_last alone 1.3-1.7x, with the fused prepacked convs 2.2-2.8x at 256..1024^2, max abs diff
~1e-7. torch.jit freeze + optimize_for_inference was slower than eager (0.74x at 256^2, 14 s to
build); torch.compile took 60 s to compile. ``predict_prob`` runs the model under ``inference_mode``
and returns maps[0] alone, skipping the five unused side outputs and their upsampling.

The optimised path is not faster everywhere (an AVX2-only AMD EPYC: 0.16x eager at 256^2 at full
width), so ``DisSam`` does not assume it: :func:`choose_inference_path` times eager and the optimised
path once per machine, network and input size, keeps the faster (:func:`choose_path`: the optimised
path only when it beats eager by more than :data:`TIE_MARGIN`) and caches the choice in memory and in
the user's cache folder. The evaluation tables (:func:`dissam.runs.load_run`) stay on the optimised path
always: a timed choice can differ between two runs on a loaded machine, and eager's maps differ from
the optimised path's by ~1e-7, enough to move a saved uint8 prediction by one level now and then and so,
rarely, a digit of a table that must be the same in every run.
"""
from __future__ import annotations

import copy
import ctypes
import ctypes.util
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from .gt_encoder import ConvBNReLU
from .rsu import REBNCONV


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv equal to ``bn(conv(x))`` for an eval-mode BatchNorm (running statistics)."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_var is None or bn.running_mean is None:
        raise TypeError("fold_bn needs a BatchNorm2d with running statistics")
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        w = conv.weight.double()
        b = (conv.bias.double() if conv.bias is not None
             else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device))
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(b)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(b)
        scale = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
        fused.weight = nn.Parameter((w * scale[:, None, None, None]).to(conv.weight.dtype), requires_grad=False)
        fused.bias = nn.Parameter(((b - bn.running_mean.double()) * scale + beta).to(conv.weight.dtype),
                                  requires_grad=False)
    return fused


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """In place: every REBNCONV / GT-encoder stem gets its BatchNorm folded and replaced by Identity."""
    for module in model.modules():
        if isinstance(module, REBNCONV) and isinstance(module.bn_s1, nn.BatchNorm2d):
            module.conv_s1 = fold_bn(module.conv_s1, module.bn_s1)
            module.bn_s1 = nn.Identity()
        elif isinstance(module, ConvBNReLU) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fold_bn(module.conv, module.bn)
            module.bn = nn.Identity()
    return model


def _mkldnn_fusable(module: nn.Module) -> bool:
    """Whether a conv can become a :class:`FusedConv2d`: oneDNN present and enabled (portable numerics,
    :mod:`dissam.numerics`, turn it off), the op registered, a CPU fp32 weight."""
    w = getattr(module, "weight", None)
    return (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and isinstance(w, torch.Tensor) and w.device.type == "cpu" and w.dtype == torch.float32)


class FusedConv2d(nn.Module):
    """``act(conv(x))`` as one oneDNN call with the weight prepacked once (CPU, fp32, inference only).

    ``act`` is ``"relu"`` or ``"none"``. The packed weight is a plain attribute (not a parameter or
    buffer): it stays on the CPU and out of ``state_dict``. Input and output are dense tensors; feed
    channels_last activations (other layouts work, but slower)."""

    def __init__(self, conv: nn.Conv2d, act: str = "none") -> None:
        super().__init__()
        if act not in ("relu", "none"):
            raise ValueError(f"act must be 'relu' or 'none', not {act!r}")
        if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise ValueError("FusedConv2d needs numeric zero padding")
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups, self.act = list(conv.dilation), conv.groups, act
        self.out_channels = conv.out_channels
        w = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        self.packed_weight = torch.ops.mkldnn._reorder_convolution_weight(
            w, self.padding, self.stride, self.dilation, self.groups)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def __deepcopy__(self, memo: dict) -> "FusedConv2d":
        """Copies repack the weight (an opaque oneDNN tensor has no storage to copy)."""
        w = self.packed_weight.to_dense()
        conv = nn.Conv2d(w.shape[1] * self.groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(self.stride),
                         padding=tuple(self.padding), dilation=tuple(self.dilation), groups=self.groups,
                         bias=self.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(w)
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        new = FusedConv2d(conv, self.act)
        new.train(self.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.packed_weight, self.bias, self.padding,
                                                       self.stride, self.dilation, self.groups,
                                                       self.act, [], "")


def fuse_convs(model: nn.Module) -> nn.Module:
    """In place, after ``fold_batchnorms``: every REBNCONV / GT-encoder stem (conv, Identity, ReLU)
    becomes one ``FusedConv2d(..., "relu")`` and every other plain Conv2d a ``FusedConv2d``.
    Convs that are not CPU fp32 (or where oneDNN is missing) are left as they are."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, REBNCONV) and isinstance(child.bn_s1, nn.Identity):
                if _mkldnn_fusable(child.conv_s1):
                    setattr(parent, name, FusedConv2d(child.conv_s1, "relu"))
            elif isinstance(child, ConvBNReLU) and isinstance(child.bn, nn.Identity):
                if _mkldnn_fusable(child.conv):
                    setattr(parent, name, FusedConv2d(child.conv, "relu"))
            elif type(child) is nn.Conv2d and _mkldnn_fusable(child) and child.padding_mode == "zeros" \
                    and isinstance(child.padding, tuple):
                setattr(parent, name, FusedConv2d(child, "none"))
    return model


class _ChannelsLastInput(nn.Module):
    """Wraps a model so its input goes in as channels_last (and ``dtype``); outputs come back fp32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.config = getattr(model, "config", {})

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype=self.dtype, memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):
        maps, feats = self.model(self._prep(x))
        return [m.float() for m in maps], [f.float() for f in feats]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict(self._prep(x)).float().contiguous()


def optimize_for_inference(model: nn.Module, channels_last: bool = True,
                           dtype: torch.dtype = torch.float32, fuse: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` (refiner or GT encoder) for fast CPU inference: BatchNorm folded
    into the convs, weights and activations in channels_last and (``fuse``, CPU fp32 with oneDNN enabled) each conv
    + ReLU one oneDNN call with a prepacked weight (``FusedConv2d``; the copy then stays on the CPU:
    ``.to(device)`` does not move packed weights). The original model is untouched;
    ``forward`` and ``predict`` give eager mode's values within 1e-4. Inference only: not for saving
    (no BatchNorm keys) or training.

    ``dtype=torch.bfloat16`` (opt-in, channels_last only) runs the network in bf16 on CPUs with
    AMX/AVX-512-BF16 (this one: ~3x faster than fp32 at width 1.0), outputs still fp32 but only
    within ~1e-2 of eager: for interactive use, not for the evaluation tables.
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, not {dtype}")
    fast = fold_batchnorms(copy.deepcopy(model).eval())
    for p in fast.parameters():
        p.requires_grad_(False)
    if not channels_last:
        if dtype != torch.float32:
            raise ValueError("bfloat16 inference needs channels_last=True")
        return fast
    fast = fast.to(dtype=dtype, memory_format=torch.channels_last)
    if fuse and dtype == torch.float32:
        fuse_convs(fast)
    return _ChannelsLastInput(fast, dtype).eval()


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters


def retain_freed_memory() -> bool:
    """Opt-in, process-wide: ask glibc to keep freed memory instead of handing it back to the OS.

    Why: every large activation (hundreds of MB at 1024^2) is otherwise a fresh mmap whose pages the
    kernel zeroes on first touch, on every forward. Measured here (1 thread, 1024^2): 0.4-1.0 s of
    system time per forward disappears (~16% of the optimised path's CPU time, ~27% of eager's);
    the cost: the process keeps its peak memory (plus some alignment slack; it settles after a few
    forwards). For the CLI, widget and benchmarks, not for library code. Returns False (changing
    nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def predict_prob(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """maps[0] of the refiner, ``[B, 1, S, S]`` probabilities, under ``torch.inference_mode``.

    Uses the model's ``predict`` (no side outputs 2..6) when it has one. A model in training mode
    is run in eval mode (BatchNorm running statistics) and put back in training mode afterwards."""
    if x.dim() != 4:
        raise ValueError(f"expected input [B, C, S, S], got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if hasattr(model, "predict"):
                return model.predict(x).contiguous()
            maps, _ = model(x)
            return maps[0].contiguous()
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- the path per machine
# The optimised path is no speed-up everywhere: on an AMD EPYC (AVX2, no AVX-512/AMX) it measured 0.16x
# eager at 256^2 and 1.01x at 1024^2 for the full-width refiner, yet 1.5-1.75x at width 0.25; on this
# AVX-512/AMX Xeon 2.2-2.8x. So the path is chosen per machine and input size by timing both once.
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
            from ..cpuinfo import cpu_id
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
    from ..fileio import atomic_write_bytes

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
