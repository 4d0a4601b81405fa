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

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

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


RGB_CHANNELS = 3
STEM_PROMPT = "conv_in.prompt"  # a trainable entry: the stem's coarse-mask and box filters alone


def zero_side_outputs(model: ISNetDIS) -> ISNetDIS:
    """Every side output's conv set to zero: the refiner's logits are then its coarse prior alone (with
    ``coarse_prior`` k > 0, ``k * (2 * mask - 1)``), so it starts as its stage 1 and learns corrections
    on the features it was initialised with."""
    with torch.no_grad():
        for name, module in model.named_children():
            if name.startswith("side"):
                module.weight.zero_()
                module.bias.zero_()
    return model


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm that always normalises with its running statistics and never updates them, in train
    mode too; its parameters and buffers are BatchNorm2d's, so checkpoints load into either."""

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


def freeze_for_finetuning(model: nn.Module, trainable: Sequence[str] | None = None,
                          freeze_batchnorm: bool = False) -> list[nn.Parameter]:
    """Fine-tuning switches, applied in place; returns the parameters that train.

    ``trainable``: prefixes of the parameter names that train (``"conv_in"``, ``"stage1d"``, ``"side"``;
    a prefix names a module, so ``"stage1"`` is the encoder's first stage and not ``"stage1d"``), and
    :data:`STEM_PROMPT` for the stem's coarse-mask and box filters alone (its RGB filters and bias stay as
    loaded); the other parameters get ``requires_grad=False``. None: all train. ``freeze_batchnorm``: every
    BatchNorm2d keeps its loaded statistics (:class:`FrozenBatchNorm2d`), as a fine-tune of the published
    IS-Net needs: its converted weights fold the BatchNorms into the convolutions (unit BatchNorms), so
    batch statistics in train mode would rescale every activation of the published network (and a batch
    of a few images gives noisy statistics anyway)."""
    names = [name for name, _ in model.named_parameters()]
    prompt_only = trainable is not None and STEM_PROMPT in trainable
    if prompt_only:
        trainable = tuple(prefix for prefix in trainable if prefix != STEM_PROMPT) + ("conv_in.weight",)
    if trainable is not None:
        unknown = [prefix for prefix in trainable if not any(_under(name, prefix) for name in names)]
        if unknown:
            raise ValueError(f"trainable prefixes {unknown} name no parameter of {type(model).__name__}")
    if freeze_batchnorm:
        for module in model.modules():
            if type(module) is nn.BatchNorm2d:
                module.__class__ = FrozenBatchNorm2d  # the same fields; only train() differs
                module.eval()
    params = []
    for name, param in model.named_parameters():
        train = trainable is None or any(_under(name, prefix) for prefix in trainable)
        param.requires_grad_(train)
        if train:
            params.append(param)
    if prompt_only:  # the RGB filters' gradient is zero, so Adam (no weight decay) leaves them as loaded
        model.conv_in.weight.register_hook(
            lambda grad: torch.cat([torch.zeros_like(grad[:, :RGB_CHANNELS]), grad[:, RGB_CHANNELS:]], 1))
    return params


def _under(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` lies in the module ``prefix`` names (``side`` also covers ``side1``..)."""
    return name == prefix or name.startswith(prefix + ".") or (
        prefix.isalpha() and name.startswith(prefix) and name[len(prefix):len(prefix) + 1].isdigit())


def write_random_isnet(path: str | Path, width: float, seed: int = 0) -> Path:
    """A randomly initialised 3-channel IS-Net saved as the DIS release saves it (a plain state dict): the
    file ``refiner_init="isnet"`` reads, for checks and tests without the download. The global random
    state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = build_refiner(in_ch=3, width=width).state_dict()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(state, path)
