"""SAM and HQ-SAM behind the stage-1 interface (one wrapper: HQ-SAM's API mirrors SAM's).

Weights come only from a local checkpoint file (nothing is downloaded). Models are built empty
(``checkpoint=None``) and the state dict is loaded here with ``torch.load(weights_only=True)``, so no
pickled code runs. The registry maps a model type to a builder of an empty model shaped for a given
state dict; ``tiny`` (a toy SAM, :mod:`.tiny_sam`; a toy HQ-SAM, :mod:`.tiny_hq_sam`) is registered in both
families so tests use the loading path users use.

segment_anything (Meta's SAM) and segment_anything_hq (HQ-SAM's PyPI release) are separate top-level modules
and share one environment. segment_anything_hq imports timm (for its TinyViT encoder) without declaring it,
so the ``hq`` extra pins timm too.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.prompts import Box
from .base import CoarseResult, CoarseSegmenter
from .hq import HQ_RELEASE, import_hq

SAM_RELEASE = "https://github.com/facebookresearch/segment-anything (README, 'Model Checkpoints')"
OFFICIAL_FILES = {
    "sam": {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"},
    "hq-sam": {"vit_b": "sam_hq_vit_b.pth", "vit_l": "sam_hq_vit_l.pth", "vit_h": "sam_hq_vit_h.pth",
               "vit_tiny": "sam_hq_vit_tiny.pth"},
}

StateDict = dict[str, torch.Tensor]
Builder = Callable[[StateDict], torch.nn.Module]


def _sam_builder(model_type: str) -> Builder:
    def build(_: StateDict) -> torch.nn.Module:
        from segment_anything import sam_model_registry
        return sam_model_registry[model_type](checkpoint=None)
    return build


def _hq_builder(model_type: str) -> Builder:
    def build(_: StateDict) -> torch.nn.Module:
        return import_hq().sam_model_registry[model_type](checkpoint=None)
    return build


def _tiny_builder(state_dict: StateDict) -> torch.nn.Module:
    from .tiny_sam import build_tiny_sam_for
    return build_tiny_sam_for(state_dict)


def _tiny_hq_builder(state_dict: StateDict) -> torch.nn.Module:
    from .tiny_hq_sam import build_tiny_hq_sam_for
    return build_tiny_hq_sam_for(state_dict)


# family -> model type -> builder of an empty model shaped for a state dict
MODEL_REGISTRY: dict[str, dict[str, Builder]] = {
    "sam": {**{t: _sam_builder(t) for t in ("vit_b", "vit_l", "vit_h")}, "tiny": _tiny_builder},
    "hq-sam": {**{t: _hq_builder(t) for t in ("vit_b", "vit_l", "vit_h", "vit_tiny")}, "tiny": _tiny_hq_builder},
}


def register_model_type(family: str, model_type: str, builder: Builder) -> None:
    """Add a model type (e.g. a fine-tuned architecture) to the loader registry of ``family``."""
    MODEL_REGISTRY.setdefault(family, {})[model_type] = builder


def state_dict_digest(module: torch.nn.Module) -> str:
    """Hash of every state-dict entry (name, dtype, shape, bytes): identifies the weights, whatever file they came from."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def architecture_digest(module: torch.nn.Module) -> str:
    """Hash of the module tree and each submodule's plain settings (heads, window sizes, ...) that
    change outputs without changing any weight's shape."""
    h = hashlib.blake2b(digest_size=8)
    for name, sub in module.named_modules():
        plain = sorted((k, repr(v)) for k, v in vars(sub).items()
                       if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, tuple)))
        h.update(f"{name}|{type(sub).__name__}|{plain}\n".encode())
    return h.hexdigest()


def missing_checkpoint_message(family: str, model_type: str, path: Path | None) -> str:
    """What to tell a user whose checkpoint is not where it was configured."""
    release = HQ_RELEASE if family == "hq-sam" else SAM_RELEASE
    official = OFFICIAL_FILES.get(family, {}).get(model_type)
    where = f"not found: {path}" if path is not None else "not configured (checkpoint=None)"
    if official:
        what = f"Expected the official {family} {model_type} weights, {official}, from {release}."
    elif model_type == "tiny":
        saved = "tiny_hq_sam.build_tiny_hq_sam" if family == "hq-sam" else "tiny_sam.build_tiny_sam"
        what = f"Model type 'tiny' loads a file saved from dissam.coarse.{saved}().state_dict()."
    else:
        what = f"Official {family} checkpoints are listed at {release}."
    return (f"{family} checkpoint {where}. {what} Download it yourself and pass its path (checkpoint=..., "
            f"or $DISSAM_SAM_CHECKPOINT for the paper profile); nothing is downloaded automatically. "
            f"Without weights use kind='grabcut', the offline default.")


def load_sam_state_dict(path: str | Path) -> StateDict:
    """A state dict from a ``.pth`` file via ``torch.load(weights_only=True)`` (a {'model': ...} wrapper is unwrapped)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_sam(family: str, model_type: str, checkpoint: str | Path | None) -> torch.nn.Module:
    """Build an empty ``family``/``model_type`` model and load the checkpoint's state dict into it (strict)."""
    types = MODEL_REGISTRY.get(family, {})
    if model_type not in types:
        raise ValueError(f"unknown {family} model type {model_type!r}; registered: {', '.join(sorted(types))}")
    path = Path(checkpoint) if checkpoint is not None else None
    if path is None:
        raise ValueError(missing_checkpoint_message(family, model_type, None))
    if not path.is_file():
        raise FileNotFoundError(missing_checkpoint_message(family, model_type, path))
    if family == "hq-sam":
        import_hq()  # a clear message before anything else fails
    state = load_sam_state_dict(path)
    model = types[model_type](state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        official = OFFICIAL_FILES.get(family, {}).get(model_type, "a matching checkpoint")
        raise ValueError(f"{path} does not fit {family} model type {model_type!r} ({first}); "
                         f"that type loads {official}. Check model_type (paper: vit_b, authors' code: vit_l).") from err
    return model.eval()


class SamSegmenter(CoarseSegmenter):
    """SamPredictor (SAM or HQ-SAM) on a built model; one embedding per image, one decoder pass per box.

    HQ-SAM's reference code (SysCV/sam-hq, demo/demo_hqsam.py) prompts boxes with one mask
    (``multimask_output=False``: dissam's ``multimask=False``, the paper variant's) and, by default,
    ``hq_token_only=False`` (dissam's default too): the HQ token's mask added to SAM's, the setting it
    gives for quantitative evaluation. ``hq_token_only=True`` is the HQ token's mask
    alone, which its DIS/ThinObject evaluation (train/train.py) scores. With ``multimask=True`` HQ-SAM's
    decoder itself keeps the best-scored of SAM's three masks (plus the HQ mask), so the result is that
    mask, not SAM's ``masks[0]``.
    """

    def __init__(self, model: torch.nn.Module, family: str = "sam", model_type: str = "module",
                 multimask: bool = False, hq_token_only: bool = False, device: str | None = None) -> None:
        super().__init__()
        if family not in ("sam", "hq-sam"):
            raise ValueError(f"family must be 'sam' or 'hq-sam', got {family!r}")
        self.family, self.model_type = family, model_type
        self.multimask, self.hq_token_only = bool(multimask), bool(hq_token_only)
        # Computed once (later in-place edits of the weights are not seen). The same weights give the same
        # key whether they came from a checkpoint or from model=, so the two share cache entries.
        self.weights, self.arch = state_dict_digest(model), architecture_digest(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device).eval()
        if family == "hq-sam":
            self.predictor = import_hq().SamPredictor(self.model)
        else:
            from segment_anything import SamPredictor
            self.predictor = SamPredictor(self.model)

    @property
    def key(self) -> str:
        key = (f"{self.family}|arch={self.arch}|weights={self.weights}|img_size={self.model.image_encoder.img_size}"
               f"|multimask={self.multimask}|threshold={self.model.mask_threshold}")
        return key + (f"|hq_token_only={self.hq_token_only}" if self.family == "hq-sam" else "")

    def _embed(self, image: np.ndarray) -> None:
        self.predictor.set_image(image, image_format="RGB")

    def _predict(self, box: Box) -> CoarseResult:
        extra = {"hq_token_only": self.hq_token_only} if self.family == "hq-sam" else {}
        logits, scores, _ = self.predictor.predict(box=np.asarray(box, np.float32), return_logits=True,
                                                   multimask_output=self.multimask, **extra)
        # Paper: one mask. Authors' code: multimask output, first mask (masks[0]), not the best-scored one.
        logits = np.ascontiguousarray(logits[0], dtype=np.float32)
        mask = np.where(logits > self.model.mask_threshold, 255, 0).astype(np.uint8)
        return CoarseResult(mask, logits, float(scores[0]))


def build_sam_segmenter(family: str = "sam", checkpoint: str | Path | None = None, model_type: str = "vit_b",
                        model: torch.nn.Module | None = None, multimask: bool = False,
                        hq_token_only: bool = False, device: str | None = None) -> SamSegmenter:
    """SAM/HQ-SAM segmenter from a checkpoint path (loaded safely) or from an already built ``model``."""
    if model is not None:
        if checkpoint is not None:
            raise ValueError("pass either checkpoint= or model=, not both")
        return SamSegmenter(model, family, "module", multimask, hq_token_only, device)
    model = load_sam(family, model_type, checkpoint)
    return SamSegmenter(model, family, model_type, multimask, hq_token_only, device)
