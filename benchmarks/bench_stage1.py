"""Stage-1 timings and GrabCut quality on the smoke data.

    python benchmarks/bench_stage1.py                 # everything (ViT-B takes ~25 s on 2 CPU cores)
    python benchmarks/bench_stage1.py --no-vit-b --no-smoke --json out.json

Measures: GrabCut (3 iterations) per image at 192 and 1024 px; SAM ViT-B image-encoder time per image
with random weights (no checkpoint needed: the cost does not depend on the weights); the tiny test SAM per
image; and, when the procedural generator is present, GrabCut's mean IoU / MAE on the smoke test sets
(whole-GT box, as at evaluation) and the time to cache the whole smoke data set.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dissam.coarse import build_coarse, cache_masks
from dissam.coarse.cache import MaskStore, image_digest
from dissam.cpuinfo import cpu_line


def disk_scene(size: int, seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A bright disk on a dark noisy background, and a loose box around it."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
    r = size // 4
    cv2.circle(image, (size // 2, size // 2), r, (220, 190, 40), -1)
    m = size // 20
    return image, (size // 2 - r - m, size // 2 - r - m, size // 2 + r + m, size // 2 + r + m)


def bench_grabcut(sizes: list[int], reps: int) -> dict[str, float]:
    out = {}
    for size in sizes:
        image, box = disk_scene(size)
        seg = build_coarse("grabcut", iters=3)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            seg.set_image(image)
            seg.predict(box)
            times.append(time.perf_counter() - t)
        out[f"grabcut_{size}px_s"] = round(min(times), 4)
        out[f"grabcut_{size}px_median_s"] = round(float(np.median(times)), 4)
    return out


def bench_sam(model: Any, size: int, runs: int, label: str) -> dict[str, float]:
    seg = build_coarse("sam", model=model, device="cpu")
    image, box = disk_scene(size)
    enc, dec = [], []
    for _ in range(runs):
        t = time.perf_counter()
        seg.set_image(image)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.predict(box)
        dec.append(time.perf_counter() - t)
    return {f"{label}_encoder_s": round(min(enc), 4), f"{label}_encoder_median_s": round(float(np.median(enc)), 4),
            f"{label}_encoder_runs_s": [round(v, 3) for v in enc],
            f"{label}_decoder_per_box_s": round(min(dec), 4)}


def mask_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    p, g = pred > 127, gt > 128
    iou = float((p & g).sum() / max((p | g).sum(), 1))
    mae = float(np.abs(pred.astype(np.float64) / 255 - gt.astype(np.float64) / 255).mean())
    return iou, mae


def bench_smoke(root: Path) -> dict[str, Any]:
    from dissam.repro.config import get_profile
    from dissam.data.enrichment import targets_for
    from dissam.data.folders import list_pairs
    from dissam.data.procedural import generate_dataset
    from dissam.data.splits import TRAIN_SPLIT

    profile = get_profile("smoke")
    t = time.perf_counter()
    generate_dataset(root / "data", profile.data, progress=False)
    out: dict[str, Any] = {"smoke_generate_s": round(time.perf_counter() - t, 1)}
    seg = build_coarse("grabcut", iters=profile.coarse.grabcut_iters)
    cache = root / "cache"
    t = time.perf_counter()
    totals = {"images": 0, "boxes": 0, "encoder_calls": 0}
    splits = sorted(p.parent.name for p in (root / "data").glob("*/im"))
    for split in splits:  # training split enriched (one box per component), the others by whole-GT box
        enrichment = profile.variant.enrichment if split == TRAIN_SPLIT else None
        m = cache_masks(seg, root / "data" / split, cache, enrichment=enrichment, progress=False)
        for k in totals:
            totals[k] += m[k]
    out["smoke_cache_s"] = round(time.perf_counter() - t, 1)
    out.update({f"smoke_cache_{k}": v for k, v in totals.items()})
    t = time.perf_counter()
    again = sum(cache_masks(seg, root / "data" / s, cache, progress=False,
                            enrichment=profile.variant.enrichment if s == TRAIN_SPLIT else None)["encoder_calls"]
                for s in splits)
    out["smoke_cache_rerun_s"], out["smoke_cache_rerun_encoder_calls"] = round(time.perf_counter() - t, 1), again
    store = MaskStore(cache, seg.key)
    for split in [s for s in splits if s != TRAIN_SPLIT]:
        ious, maes = [], []
        for pair in list_pairs(root / "data" / split):
            image, gt = pair.load()
            (target,) = targets_for(gt, None) or (None,)
            if target is None:
                continue
            iou, mae = mask_scores(store.get(image_digest(image), target.box), gt)
            ious.append(iou)
            maes.append(mae)
        out[f"grabcut_{split}"] = {"images": len(ious), "mean_iou": round(float(np.mean(ious)), 4),
                                   "mae": round(float(np.mean(maes)), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 1024])
    ap.add_argument("--reps", type=int, default=5, help="GrabCut repetitions per size")
    ap.add_argument("--vit-b-runs", type=int, default=2)
    ap.add_argument("--no-vit-b", action="store_true")
    ap.add_argument("--no-smoke", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="where smoke data and cache go (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    print(cpu_line())

    import torch
    from dissam.coarse.tiny_sam import build_tiny_sam

    results: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "opencv": cv2.__version__}
    results.update(bench_grabcut(args.sizes, args.reps))
    results.update(bench_sam(build_tiny_sam(), 192, 10, "tiny_sam_192px"))
    if not args.no_vit_b:
        from segment_anything import sam_model_registry
        results.update(bench_sam(sam_model_registry["vit_b"](checkpoint=None), 1024, args.vit_b_runs, "sam_vit_b"))
    if not args.no_smoke:
        try:
            import dissam.data.procedural  # noqa: F401
        except ImportError:
            results["smoke"] = "skipped: dissam.data.procedural is not there"
        else:
            if args.workdir is not None:
                results.update(bench_smoke(args.workdir))
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    results.update(bench_smoke(Path(tmp)))
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
