"""The refiner as an ONNX file, and stage 2 on ONNX Runtime (``dissam export``, ``backend="onnxruntime"``).

The exported graph is exactly what the predictor runs in PyTorch (:func:`dissam.model.inference.predict_prob`):
``input`` float32 ``[B, in_ch, H, W]`` -> ``prob`` float32 ``[B, 1, H, W]``, maps[0] after the sigmoid,
the coarse prior included when the checkpoint trains with one. Batch, height and width are dynamic.
What the predictor needs beside the weights travels in the model's metadata (``dissam_format``,
``model_config``, and ``train_config`` (input size, channel switches) and ``profile`` as
:func:`~dissam.model.checkpoint.checkpoint_metadata` reads them), so a ``.onnx`` file alone is enough
to predict.

``onnx`` (export, checking) and ``onnxruntime`` (running) are the optional extra ``dissam[onnx]``;
they are imported only here, when needed, with an error that says how to install them.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_write_bytes
from .checkpoint import CheckpointError, checkpoint_metadata, load_refiner

FORMAT = "dissam-onnx/v1"
INPUT, OUTPUT = "input", "prob"
OPSET = 17
# Traced at this size: every pyramid level (down to 1/64) then differs in size from the one below it,
# so every ``upsample_like`` is recorded as a Resize (at sizes where two levels coincide it resizes to
# the same size, an exact identity); 64 would be the least such size. Non-square, so that height and
# width stay separate in the graph.
TRACE_HW = (128, 160)
INSTALL_HINT = "pip install 'dissam[onnx]'"


def require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or an ImportError that says which extra installs it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"{module} is not installed; the ONNX export and the onnxruntime backend need "
                          f"the 'onnx' extra: {INSTALL_HINT}") from err


class _Prob(nn.Module):
    """The refiner's maps[0] alone (its ``predict``), as the predictor uses it; the exported module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "predict"):
            return self.model.predict(x)
        return self.model(x)[0][0]


def onnx_bytes(model: nn.Module, metadata: dict[str, Any] | None = None, opset: int = OPSET) -> bytes:
    """``model`` (a refiner, eval mode is used) as a checked ONNX model, serialised. ``metadata``
    (``train_config``, ``profile``) is stored beside ``model_config`` as JSON strings."""
    onnx = require("onnx")
    config = dict(getattr(model, "config", None) or {})
    in_ch = int(config.get("in_ch", 5))
    was_training = model.training
    wrapper = _Prob(model).eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter (the torch.export one needs onnxscript) warns that it is the legacy
            # path, and the tracer that upsample_like's shape test becomes a constant (see TRACE_HW).
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            dummy = torch.zeros(1, in_ch, *TRACE_HW, device=next(model.parameters()).device)
            torch.onnx.export(wrapper, (dummy,), buffer, dynamo=False,
                              opset_version=opset, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"},
                                            OUTPUT: {0: "batch", 2: "height", 3: "width"}})
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {"dissam_format": FORMAT, "model_config": config, **(metadata or {})}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    proto.producer_name = "dissam"
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def export_refiner(checkpoint: str | os.PathLike, output: str | os.PathLike, opset: int = OPSET) -> Path:
    """``dissam export``: a refiner checkpoint (ours or an official IS-Net file) -> a checked ONNX file
    with the predictor's metadata. Atomic; CheckpointError for a missing or unreadable checkpoint."""
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"the ONNX file name must end in .onnx, got {output}")
    model = load_refiner(checkpoint)
    data = onnx_bytes(model, checkpoint_metadata(checkpoint), opset)
    return atomic_write_bytes(output, data)


def load_session(model: str | os.PathLike | bytes, threads: int | None = None, spinning: bool | None = None):
    """An ONNX Runtime session on the CPU provider, all graph optimisations on. ``threads``: intra-op
    threads (None: ONNX Runtime's default, one per physical core); ``spinning`` False makes idle
    threads sleep instead of spinning (kinder to a shared CPU; None: the default, spinning)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise CheckpointError(f"{model}: ONNX file not found")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        where = "<bytes>" if isinstance(model, bytes) else model
        raise CheckpointError(f"{where}: cannot load as an ONNX model ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


class OnnxRefiner:
    """Stage 2 on ONNX Runtime: ``runner(x)`` with ``x`` float32 ``[B, in_ch, H, W]`` -> ``[B, 1, H, W]``
    probabilities (numpy), the values of ``predict_prob(refiner, x)``. ``config`` is the refiner's
    (``in_ch``, ``width``, ``coarse_prior``); ``meta`` the predictor's ``train_config`` and ``profile``."""

    backend = "onnxruntime"

    def __init__(self, session: Any) -> None:
        self.session = session
        props = dict(session.get_modelmeta().custom_metadata_map)
        if props.get("dissam_format") != FORMAT:
            raise CheckpointError(f"not a dissam refiner export: expected metadata dissam_format={FORMAT!r}, "
                                  f"found {props.get('dissam_format')!r} (make one with `dissam export`)")
        self.config: dict[str, Any] = json.loads(props.get("model_config", "{}"))
        self.meta: dict[str, Any] = {"train_config": json.loads(props.get("train_config", "{}"))}
        if props.get("profile"):
            self.meta["profile"] = props["profile"]
        for key in ("variant", "stage1"):
            if props.get(key):
                self.meta[key] = json.loads(props[key])
        self.in_ch = int(self.config.get("in_ch", 5))

    # Idle threads sleep: on our shared 2-core CPU that was faster than ONNX Runtime's default spinning
    # (docs/benchmarks.md, "Inference on the CPU").
    @classmethod
    def from_file(cls, path: str | os.PathLike, threads: int | None = None,
                  spinning: bool = False) -> "OnnxRefiner":
        """From a file written by :func:`export_refiner` (``threads``, ``spinning``: :func:`load_session`)."""
        return cls(load_session(path, threads, spinning))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, threads: int | None = None,
                        spinning: bool = False) -> "OnnxRefiner":
        """From a PyTorch checkpoint, exported in memory (no file written)."""
        require("onnxruntime")  # before the export, which takes seconds
        return cls(load_session(onnx_bytes(load_refiner(path), checkpoint_metadata(path)), threads, spinning))

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected input [B, {self.in_ch}, H, W], got shape {tuple(x.shape)}")
        return self.session.run([OUTPUT], {INPUT: x})[0]
