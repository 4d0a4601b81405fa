"""The refiner's initial weights: from scratch, or the published 3-channel IS-Net (``Variant.refiner_init``).

``"isnet"`` starts the refiner from the official ``isnet.pth`` / ``isnet-general-use.pth`` (the DIS
release), or from the checkpoint ``dissam weights isnet`` converts from a published ONNX copy of the
general-use weights (:mod:`dissam.model.published`): the RGB filters of the stem are copied and the
coarse-mask and box filters are zero (:func:`dissam.model.checkpoint.load_refiner` widens the stem), so
at step 0 the refiner returns exactly what the published IS-Net returns on the RGB (eval mode), whatever
the other two channels hold. The converted file has its BatchNorms folded into the convs (identity
BatchNorms), so in training mode batch statistics meet unit scales rather than the original ones. This
is the paper's "fine-tune IS-Net"; the authors' code trains from scratch.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import atomic_torch_save, load_refiner
from .isnet import ISNetDIS, build_refiner

REFINER_INITS = ("scratch", "isnet")
ISNET_SOURCE = ("the DIS release (github xuebinqin/DIS, README: 'isnet.pth' or 'isnet-general-use.pth'), or "
                "convert the general-use weights with `dissam weights isnet` (it prints the file's path); "
                "give it with --isnet-checkpoint or $DISSAM_ISNET_CHECKPOINT (profile.baselines.isnet_checkpoint)")


class MissingIsnetCheckpoint(FileNotFoundError):
    """``refiner_init="isnet"`` without the published IS-Net weights; the message says where to get them."""


def isnet_init_checkpoint(path: str | Path | None) -> Path:
    """The published IS-Net file ``refiner_init="isnet"`` starts from; a one-line error when missing."""
    if path is None or not Path(path).is_file():
        found = "was not given" if path is None else f"not found at {path}"
        raise MissingIsnetCheckpoint(f"refiner_init='isnet' fine-tunes the published IS-Net, whose weights "
                                     f"{found}: download them from {ISNET_SOURCE}, or set "
                                     "Variant.refiner_init='scratch' (and a from-scratch rate, e.g. train.lr=4e-5)")
    return Path(path)


def initial_refiner(init: str, in_ch: int, width: float, coarse_prior: float = 0.0,
                    isnet_checkpoint: str | Path | None = None) -> ISNetDIS:
    """The refiner a run starts from, in train mode: ``in_ch`` input channels (3..5) at channel ``width``.

    ``init`` (``Variant.refiner_init``) ``"scratch"``: :func:`build_refiner`'s random weights. ``"isnet"``:
    the same model built first (so the random-number stream after this call is the same for both), then
    the published IS-Net's weights (``isnet_checkpoint``) loaded into it, extra input channels zero.
    ``coarse_prior`` has no parameters and is kept."""
    if init not in REFINER_INITS:
        raise ValueError(f"unknown refiner_init {init!r}; choose one of {', '.join(REFINER_INITS)}")
    model = build_refiner(in_ch=in_ch, width=width, coarse_prior=coarse_prior)
    if init == "isnet":
        published = load_refiner(isnet_init_checkpoint(isnet_checkpoint), in_ch=in_ch, width=width)
        model.load_state_dict(published.state_dict(), strict=True)
    return model.train()


def write_random_isnet(path: str | Path, width: float, seed: int = 0) -> Path:
    """A randomly initialised 3-channel IS-Net saved as the DIS release saves it (a plain state dict): the
    file ``refiner_init="isnet"`` reads, for checks and tests without the download. The global random
    state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = build_refiner(in_ch=3, width=width).state_dict()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(state, path)
