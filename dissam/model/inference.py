"""A faster inference path for the refiner on CPU, with outputs equal to eager mode (1e-4).

``optimize_for_inference`` returns an eval-mode copy with every BatchNorm folded into the conv
before it, activations in channels_last and, on CPU in fp32, every conv replaced by a oneDNN conv with
a weight prepacked once (``mkldnn._reorder_convolution_weight``) and the ReLU fused into it
(``mkldnn._convolution_pointwise``, the kernel torch.compile's CPU backend emits). This removes a
weight reorder per conv call, the separate ReLU pass and ATen's fallback to its slow im2col conv for
small batch-1 inputs (most of the RSU blocks' deep levels). Against eager under inference_mode it is
about twice as fast on an AVX-512/AMX CPU, maps within ~1e-7; torch.jit freeze was slower than eager and
torch.compile too slow to compile (docs/benchmarks.md, "Inference on the CPU";
``benchmarks/bench_refiner.py``). ``predict_prob`` runs the model under ``inference_mode`` and returns
maps[0] alone, skipping the five unused side outputs and their upsampling.

Which path a user's predictor takes on a machine is :mod:`dissam.model.path_choice`'s job.
"""
from __future__ import annotations

import copy
import ctypes
import ctypes.util
import sys

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
    AMX/AVX-512-BF16 (faster than fp32 there: docs/benchmarks.md), outputs still fp32 but only
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
    kernel zeroes on first touch, on every forward; keeping it removes that system time (a sixth to a
    quarter of a forward's CPU time at 1024^2: docs/benchmarks.md, "Inference on the CPU"); the cost:
    the process keeps its peak memory (plus some alignment slack; it settles after a few forwards).
    For the CLI, widget and benchmarks, not for library code. Returns False (changing nothing) where
    the C library is not glibc.
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
