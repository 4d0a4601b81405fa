"""A toy SAM built from segment_anything's own modules, randomly initialised, for tests and demos.

It runs the real code path (SamPredictor, ResizeLongestSide, prompt encoder, mask decoder,
postprocessing) in ~10 ms per image on a CPU. SamPredictor resizes the long side to
``image_encoder.img_size`` and the decoder's low-resolution masks are ``4 * img_size / patch`` wide, so
any ``img_size`` divisible by the patch size works. Its masks mean nothing: it checks plumbing only.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
from segment_anything import modeling
from segment_anything.modeling import Sam

TINY_PATCH = 8


def build_toy_sam(modeling: Any, seed: int = 0, img_size: int = 64, embed_dim: int = 32,
                  prompt_dim: int = 32, hq: bool = False) -> torch.nn.Module:
    """The toy SAM from a SAM package's ``modeling`` module: segment_anything's, or with ``hq``
    segment_anything_hq's, whose mask decoder adds the HQ token and fuses the early ViT features
    (block 1, the global one). Deterministic by ``seed``; the global torch RNG is left untouched."""
    if img_size % TINY_PATCH:
        raise ValueError(f"img_size must be a multiple of the patch size {TINY_PATCH}, got {img_size}")
    grid = img_size // TINY_PATCH
    decoder = partial(modeling.MaskDecoderHQ, vit_dim=embed_dim) if hq else modeling.MaskDecoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = modeling.Sam(
            image_encoder=modeling.ImageEncoderViT(
                img_size=img_size, patch_size=TINY_PATCH, embed_dim=embed_dim, depth=2, num_heads=2,
                mlp_ratio=2.0, out_chans=prompt_dim, qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                window_size=4, global_attn_indexes=(1,)),
            prompt_encoder=modeling.PromptEncoder(
                embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                input_image_size=(img_size, img_size), mask_in_chans=4),
            mask_decoder=decoder(
                transformer_dim=prompt_dim, num_multimask_outputs=3,
                transformer=modeling.TwoWayTransformer(depth=1, embedding_dim=prompt_dim, num_heads=2,
                                                       mlp_dim=64),
                iou_head_depth=2, iou_head_hidden_dim=32),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    return sam.eval()


def build_tiny_sam(seed: int = 0, img_size: int = 64, embed_dim: int = 32, prompt_dim: int = 32) -> Sam:
    """Randomly initialised toy SAM (deterministic by ``seed``; the global torch RNG is left untouched)."""
    return build_toy_sam(modeling, seed, img_size, embed_dim, prompt_dim)


def tiny_img_size(state_dict: dict[str, torch.Tensor]) -> int:
    """The ``img_size`` a saved tiny SAM was built with (from its positional embedding's grid)."""
    pos = state_dict.get("image_encoder.pos_embed")
    if pos is None or pos.ndim != 4:
        raise ValueError("not a tiny SAM state dict: no 4-d 'image_encoder.pos_embed'")
    return int(pos.shape[1]) * TINY_PATCH


def build_tiny_sam_for(state_dict: dict[str, torch.Tensor]) -> Sam:
    """An empty tiny SAM shaped like ``state_dict`` (the loader registry's builder for model type 'tiny')."""
    embed_dim = int(state_dict["image_encoder.pos_embed"].shape[3]) if "image_encoder.pos_embed" in state_dict else 32
    no_mask = state_dict.get("prompt_encoder.no_mask_embed.weight")
    prompt_dim = int(no_mask.shape[1]) if no_mask is not None else 32
    return build_tiny_sam(img_size=tiny_img_size(state_dict), embed_dim=embed_dim, prompt_dim=prompt_dim)
