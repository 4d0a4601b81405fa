"""Saving and loading refiner / GT-encoder weights: our format and the official IS-Net files.

The one reader (:func:`load_checkpoint`) and writers (:func:`save_refiner`, :func:`save_gt_encoder`) of
the package. Our checkpoint is a dict ``{"format": "dissam/v1", "model_kind": ..., "model_config": {...},
"model": state_dict, ...}`` plus whatever the trainer adds (optimizer, rng, iteration, config).
Official ISNetDIS / ISNetGTEncoder files are plain state dicts (maybe wrapped in ``"model"`` or
``"state_dict"``, maybe with DDP's ``"module."`` prefixes); a 3-channel IS-Net loads into the
5-channel refiner with the RGB stem filters copied and the two extra channels zero. Everything
is read with ``torch.load(weights_only=True)``; any mismatch is a :class:`CheckpointError` that
names the file, what was expected and what was found.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fileio import atomic_write
from .gt_encoder import build_gt_encoder
from .isnet import build_refiner

FORMAT = "dissam/v1"
STEM_KEY = "conv_in.weight"  # refiner stem: [64 * width, in_ch, 3, 3]
GT_STEM_KEY = "conv_in.conv.weight"  # GT encoder stem: [16 * width, 1, 3, 3]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the model asked for; the one-line
    message names the file and says what was expected (the only checkpoint error of the package)."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`dissam.fileio.atomic_write` (temporary file, fsync, ``os.replace``):
    a crash mid-write never leaves a truncated file under ``path``."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def _save(model: nn.Module, kind: str, path: str | os.PathLike, extra: dict[str, Any]) -> Path:
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(model).__name__} has no .config dict; build it with build_refiner/build_gt_encoder")
    reserved = {"format", "model_kind", "model_config", "model"} & set(extra)
    if reserved:
        raise ValueError(f"extra keys {sorted(reserved)} are reserved by the checkpoint format")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {"format": FORMAT, "model_kind": kind, "model_config": dict(config), "model": state, **extra}
    return atomic_torch_save(ckpt, path)


def save_refiner(model: nn.Module, path: str | os.PathLike, **extra: Any) -> Path:
    """Write the refiner in our format; ``extra`` (optimizer state, rng, iteration, train config as
    plain types) is stored beside it. Atomic."""
    return _save(model, "refiner", path, extra)


def save_gt_encoder(model: nn.Module, path: str | os.PathLike, **extra: Any) -> Path:
    """Write the GT encoder in our format (as :func:`save_refiner`)."""
    return _save(model, "gt_encoder", path, extra)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """The raw object in a checkpoint file (weights_only); CheckpointError if missing or unreadable.
    The trainer uses it to resume (optimizer state, iteration...)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file, or unsafe pickle content
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def _state_dict_of(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str | None]:
    """(state_dict, our model_config or None, our model_kind or None) from whatever the file holds."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict or a dict holding one, found {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        return dict(obj["model"]), dict(obj.get("model_config") or {}), obj.get("model_kind")
    if isinstance(obj.get("format"), str):
        raise CheckpointError(f"{path}: expected checkpoint format {FORMAT!r}, found {obj['format']!r}")
    for wrapper in ("model", "state_dict"):
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: expected a state dict of tensors, found entry {key!r} "
                                  f"of type {type(value).__name__}")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state, None, None


def _describe(state: Mapping[str, torch.Tensor], limit: int = 3) -> str:
    keys = list(state)[:limit]
    return ", ".join(f"{k} {tuple(state[k].shape)}" for k in keys) + (" ..." if len(state) > limit else "")


def _check_and_load(model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> nn.Module:
    """Strict key/shape comparison with a message naming the first difference, then load."""
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise CheckpointError(f"{path}: expected {what} key {key!r} {tuple(ref.shape)}, not in the file "
                                  f"(file holds {len(state)} tensors: {_describe(state)})")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise CheckpointError(f"{path}: {what} key {key!r}: expected shape {tuple(ref.shape)}, "
                                  f"found {tuple(state[key].shape)}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(f"{path}: unexpected key {unexpected[0]!r} for {what} "
                              f"({len(unexpected)} unexpected in all)")
    model.load_state_dict(state, strict=True)
    return model


def _stem(state: Mapping[str, torch.Tensor], key: str, path: Path, what: str) -> torch.Tensor:
    stem = state.get(key)
    if stem is None or stem.dim() != 4:
        raise CheckpointError(f"{path}: expected {what} with a 4-d {key!r}, found none "
                              f"(file holds {len(state)} tensors: {_describe(state)})")
    return stem


def _expand_rgb_stem(state: dict[str, torch.Tensor], in_ch: int) -> dict[str, torch.Tensor]:
    """3-channel IS-Net stem -> ``in_ch`` channels: RGB filters copied, the extra channels zero."""
    stem = state[STEM_KEY]
    wide = stem.new_zeros(stem.shape[0], in_ch, *stem.shape[2:])
    wide[:, :3] = stem
    return {**state, STEM_KEY: wide}


def load_refiner(path: str | os.PathLike, in_ch: int | None = None, map_location: Any = "cpu",
                 width: float | None = None) -> nn.Module:
    """A refiner from our checkpoint or an official ISNetDIS file (5- or 3-channel).

    ``in_ch=None``: our files keep their config, official files give the 5-channel refiner (a
    3-channel IS-Net is widened). ``width=None``: from our config, else inferred from the stem
    (official = 1.0); when given, a different width is an error. Returns the model in eval mode.
    """
    path = Path(path)
    state, config, kind = _state_dict_of(load_checkpoint(path, map_location), path)
    if kind is not None and kind != "refiner":
        raise CheckpointError(f"{path}: expected a refiner checkpoint, found a {kind!r} checkpoint")
    stem = _stem(state, STEM_KEY, path, "an IS-Net refiner state dict")
    file_in_ch = int(stem.shape[1])
    file_width = float(config["width"]) if config and "width" in config else stem.shape[0] / 64.0
    if width is not None and abs(file_width - width) > 1e-9:
        raise CheckpointError(f"{path}: expected a refiner of width {width}, found width {file_width:g} "
                              f"({STEM_KEY} {tuple(stem.shape)})")
    want_in = in_ch if in_ch is not None else (int(config["in_ch"]) if config and "in_ch" in config else 5)
    if file_in_ch == 3 and want_in > 3:
        state = _expand_rgb_stem(state, want_in)
    elif file_in_ch != want_in:
        raise CheckpointError(f"{path}: expected a refiner with {want_in} input channels, found "
                              f"{file_in_ch} ({STEM_KEY} {tuple(stem.shape)})")
    model = build_refiner(in_ch=want_in, width=file_width,
                          coarse_prior=float(config.get("coarse_prior", 0.0)) if config else 0.0)
    return _check_and_load(model, state, path, f"refiner(in_ch={want_in}, width={file_width:g})").eval()


def load_gt_encoder(path: str | os.PathLike, map_location: Any = "cpu", width: float | None = None) -> nn.Module:
    """A GT encoder from our checkpoint or an official ISNetGTEncoder file; eval mode."""
    path = Path(path)
    state, config, kind = _state_dict_of(load_checkpoint(path, map_location), path)
    if kind is not None and kind != "gt_encoder":
        raise CheckpointError(f"{path}: expected a GT-encoder checkpoint, found a {kind!r} checkpoint")
    stem = _stem(state, GT_STEM_KEY, path, "a GT-encoder state dict")
    file_width = float(config["width"]) if config and "width" in config else stem.shape[0] / 16.0
    if width is not None and abs(file_width - width) > 1e-9:
        raise CheckpointError(f"{path}: expected a GT encoder of width {width}, found width {file_width:g} "
                              f"({GT_STEM_KEY} {tuple(stem.shape)})")
    model = build_gt_encoder(width=file_width)
    return _check_and_load(model, state, path, f"GT encoder(width={file_width:g})").eval()


TRAIN_KEYS = ("size", "use_mask", "use_box", "in_ch")  # what a predictor reads of a train_config


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The plain entries of our checkpoint a predictor needs beside the weights: ``train_config``
    (``TRAIN_KEYS`` only: input size and channel switches), ``profile`` (its name), ``variant`` and
    ``stage1`` (the arguments of :func:`dissam.coarse.build_coarse`); empty for an
    official IS-Net file. :class:`dissam.DisSam` reads them, and ``dissam export`` stores them in the
    ONNX file."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        return {}
    meta: dict[str, Any] = {}
    train = ckpt.get("train_config")
    if isinstance(train, dict):
        meta["train_config"] = {k: train[k] for k in TRAIN_KEYS if k in train}
    profile = ckpt.get("profile")
    if isinstance(profile, dict):
        profile = profile.get("name")
    if isinstance(profile, str):
        meta["profile"] = profile
    for key in ("variant", "stage1"):  # the variant and the stage 1 it was trained with
        if isinstance(ckpt.get(key), dict):
            meta[key] = ckpt[key]
    return meta
