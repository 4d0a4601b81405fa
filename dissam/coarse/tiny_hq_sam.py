"""A toy HQ-SAM built from segment_anything_hq's own modules, randomly initialised, for tests and demos.

The HQ-SAM counterpart of :mod:`.tiny_sam`: the same toy ViT image encoder (HQ-SAM's version, which also
returns the features after each global-attention block) and prompt encoder, with HQ-SAM's mask decoder
(the HQ output token and the fusion of early ViT features), so the real HQ-SAM code path (SamPredictor,
``hq_token_only``, postprocessing) runs in milliseconds on a CPU. Its masks mean nothing: it checks plumbing.
segment_anything_hq is imported when a model is built, so importing this module never needs it.
"""
from __future__ import annotations

import torch

from .hq import import_hq
from .tiny_sam import build_toy_sam, tiny_img_size


def build_tiny_hq_sam(seed: int = 0, img_size: int = 64, embed_dim: int = 32, prompt_dim: int = 32) -> torch.nn.Module:
    """Randomly initialised toy HQ-SAM (deterministic by ``seed``; the global torch RNG is left untouched).
    ``prompt_dim`` must be a multiple of 8 (the decoder's mask features have ``prompt_dim // 8`` channels)."""
    if prompt_dim % 8:
        raise ValueError(f"prompt_dim must be a multiple of 8, got {prompt_dim}")
    return build_toy_sam(import_hq().modeling, seed, img_size, embed_dim, prompt_dim, hq=True)


def build_tiny_hq_sam_for(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """An empty tiny HQ-SAM shaped like ``state_dict`` (the loader registry's builder for hq-sam model type 'tiny')."""
    if "mask_decoder.hf_token.weight" not in state_dict:
        raise ValueError("not a tiny HQ-SAM state dict: no 'mask_decoder.hf_token.weight' (a plain SAM's? "
                         "then use kind 'sam')")
    img_size = tiny_img_size(state_dict)
    embed_dim = int(state_dict["image_encoder.pos_embed"].shape[3])
    prompt_dim = int(state_dict["mask_decoder.hf_token.weight"].shape[1])
    return build_tiny_hq_sam(img_size=img_size, embed_dim=embed_dim, prompt_dim=prompt_dim)
