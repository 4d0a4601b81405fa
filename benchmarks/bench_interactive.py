"""Interactive latency: time from a new box to the refined mask, first box (includes the stage-1 image
embedding) vs later boxes on the same image (prompt + refiner only). Goal: later boxes < 0.3 s on CPU.

    python benchmarks/bench_interactive.py                    # smoke checkpoint, GrabCut stage 1
    python benchmarks/bench_interactive.py --vit-b --json out.json   # also SAM ViT-B (random weights) as stage 1

``grabcut@384`` rows: stage 1 on a copy of the image shrunk to 384 px (``DisSam(stage1_max_side=384)``).

Uses the smoke profile's trained refiner when present; otherwise an untrained refiner of the smoke
width (the time does not depend on the weights) and says so. Images: smoke DIS-VD scenes when the
data exist, else procedural scenes rendered here; also the same scenes upscaled (user photos are larger).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dissam.config import get_profile
from dissam.data.prompts import box_from_mask, jitter_box
from dissam.data.splits import VAL_SPLIT
from dissam.predictor import DisSam


def load_model(segmenter: Any = None) -> tuple[DisSam, str]:
    """The smoke refiner (or an untrained one of its width) with the given or the profile's stage 1."""
    profile = get_profile("smoke")
    ckpt = profile.refiner_checkpoint
    if ckpt.is_file():
        return DisSam.from_checkpoint(ckpt, coarse=segmenter, profile=profile, device="cpu"), f"checkpoint {ckpt}"
    from dissam.model import build_refiner
    from dissam.stages import build_stage1

    torch.manual_seed(0)
    refiner = build_refiner(in_ch=5, width=profile.train.width)
    model = DisSam(refiner, segmenter or build_stage1(profile), size=profile.train.size,
                   variant=profile.variant, device="cpu")
    return model, f"no smoke checkpoint at {ckpt}: untrained refiner, width {profile.train.width}"


def scenes(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB, GT) pairs: the smoke DIS-VD split if generated, else procedural scenes at the smoke size."""
    profile = get_profile("smoke")
    folder = profile.data_root / VAL_SPLIT
    if (folder / "im").is_dir():
        from dissam.data.folders import list_pairs
        return [p.load() for p in list_pairs(folder)[:n]]
    from dissam.data.procedural import render_scene, scene_rng
    return [render_scene(scene_rng(profile.data.seed, VAL_SPLIT, i), profile.data.size, "dis") for i in range(n)]


def time_boxes(model: DisSam, image: np.ndarray, gt: np.ndarray, later: int, rng: np.random.Generator) -> dict:
    """Seconds from box to refined mask: the first box (fresh image) and ``later`` jittered boxes."""
    h, w = gt.shape
    box = box_from_mask(gt)
    start = time.perf_counter()
    first = model.predict(image, box)
    first_s = time.perf_counter() - start
    calls = getattr(model.segmenter, "encoder_calls", None)
    laters, parts = [], []
    for _ in range(later):
        b = jitter_box(box, h, w, rng, scale=0.1)
        start = time.perf_counter()
        pred = model.predict(image, b)
        laters.append(time.perf_counter() - start)
        parts.append(pred.timings)
    assert getattr(model.segmenter, "encoder_calls", None) == calls, "a later box re-embedded the image"
    return {"first": first_s, "first_embed": first.timings["embed"], "later": laters,
            "prompt": [p["prompt"] for p in parts], "refine": [p["refine"] for p in parts]}


def run(model: DisSam, pairs: list, scale: int, later: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    rows = []
    for image, gt in pairs:
        if scale > 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            gt = cv2.resize(gt, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        model._key = None  # a fresh image for every scene, even if two scenes were equal
        rows.append(time_boxes(model, image, gt, later, rng))
    later_all = [t for r in rows for t in r["later"]]
    return {
        "image_px": int(pairs[0][1].shape[0] * scale),
        "first_box_s_median": statistics.median(r["first"] for r in rows),
        "first_box_embed_s_median": statistics.median(r["first_embed"] for r in rows),
        "later_box_s_median": statistics.median(later_all),
        "later_box_s_p90": float(np.percentile(later_all, 90)),
        "later_box_s_min": min(later_all),
        "later_prompt_s_median": statistics.median(t for r in rows for t in r["prompt"]),
        "later_refine_s_median": statistics.median(t for r in rows for t in r["refine"]),
        "scenes": len(rows), "later_boxes": len(later_all),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=5)
    parser.add_argument("--later", type=int, default=10, help="later boxes per scene")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4], help="image upscaling factors")
    parser.add_argument("--stage1-max-side", type=int, default=384,
                        help="also time upscaled images with stage 1 on a copy shrunk to this long side (0: off)")
    parser.add_argument("--vit-b", action="store_true", help="also SAM ViT-B (random weights) as stage 1")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = scenes(args.scenes)
    model, source = load_model()
    print(f"refiner: {source}; stage 1: {model.segmenter!r}; {torch.get_num_threads()} threads")
    results: dict[str, Any] = {"refiner": source, "threads": torch.get_num_threads(), "runs": []}
    configs = [("grabcut", model, s) for s in args.scales]
    if args.stage1_max_side:
        shrunk, _ = load_model()
        shrunk.stage1_max_side = args.stage1_max_side
        configs += [(f"grabcut@{args.stage1_max_side}", shrunk, s) for s in args.scales if s > 1]
    if args.vit_b:
        from segment_anything import sam_model_registry

        from dissam.coarse import build_coarse
        sam = build_coarse("sam", model=sam_model_registry["vit_b"](checkpoint=None), device="cpu")
        configs.append(("sam_vit_b_random", load_model(sam)[0], 1))
    for name, m, scale in configs:
        row = {"stage1": name, **run(m, pairs, scale, args.later if name.startswith("grabcut") else 3)}
        results["runs"].append(row)
        print(f"{name:>17} {row['image_px']:>5} px: first box {row['first_box_s_median']:.3f} s "
              f"(embed {row['first_box_embed_s_median']:.3f} s), later boxes median {row['later_box_s_median']:.3f} s "
              f"p90 {row['later_box_s_p90']:.3f} s min {row['later_box_s_min']:.3f} s (prompt {row['later_prompt_s_median']:.3f} + refine "
              f"{row['later_refine_s_median']:.3f})  goal < 0.3 s: "
              f"{'met' if row['later_box_s_median'] < 0.3 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
