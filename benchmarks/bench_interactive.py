"""Interactive latency at photo sizes, and what bounding stage 1's image size costs in quality.

Two settings side by side, in one run: stage 1 (GrabCut) on the full-size image (``stage1_max_side=0``,
the setting before the bound) and the default (``"auto"``: GrabCut sees the image shrunk to
``DEFAULT_STAGE1_MAX_SIDE`` on its long side, the refiner restores the detail); ``--bounds`` adds others.

  * latency: seconds from a new box to the refined mask, first box (stage-1 embedding included) and
    later jittered boxes on the same image, on scikit-image's astronaut (512^2 as shipped, and upscaled
    to 1152^2 = 1.3 MP) and a smoke DIS-VD scene upscaled to 512^2 and 1152^2. Goal: later boxes < 0.3 s.
  * quality: maxF and HCE (dissam.metrics) of the refined maps and of stage 1's masks on smoke DIS-VD and
    DIS-TE1 (``--sets``), every scene and its GT upscaled ``--upscale`` times (4x: 768 px), so that the
    bound really shrinks the image; the native 192 px scenes as a reference row.

    python benchmarks/bench_interactive.py                       # smoke checkpoint and data of $DISSAM_RUNS
    python benchmarks/bench_interactive.py --checkpoint R.pt --data DIR --json out.json
    python benchmarks/bench_interactive.py --vit-b               # also SAM ViT-B (random weights), full size
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

from dissam.repro.config import get_profile
from dissam.cpuinfo import cpu_line
from dissam.data.folders import list_pairs
from dissam.data.prompts import box_from_mask, jitter_box, scale_box
from dissam.metrics import DISMetrics
from dissam.predictor import DEFAULT_STAGE1_MAX_SIDE, DisSam

ASTRONAUT_BOX = (20, 15, 365, 512)  # dissam.repro.real_photos: the astronaut, in the 512 px photo


def load_model(checkpoint: Path | None, stage1_max_side: Any = "auto", segmenter: Any = None) -> tuple[DisSam, str]:
    """The smoke refiner (or an untrained one of its width) with the given or the profile's stage 1."""
    profile = get_profile("smoke")
    ckpt = checkpoint or profile.refiner_checkpoint
    if Path(ckpt).is_file():
        return (DisSam.from_checkpoint(ckpt, coarse=segmenter, device="cpu",
                                       stage1_max_side=stage1_max_side), f"checkpoint {ckpt}")
    from dissam.model import build_refiner
    from dissam.repro.stages import build_stage1

    torch.manual_seed(0)
    refiner = build_refiner(in_ch=5, width=profile.train.width)
    model = DisSam(refiner, segmenter or build_stage1(profile), size=profile.train.size, variant=profile.variant,
                   device="cpu", stage1_max_side=stage1_max_side)
    return model, f"no checkpoint at {ckpt}: untrained refiner, width {profile.train.width} (quality rows meaningless)"


def data_root(data: Path | None) -> Path:
    return data or get_profile("smoke").data_root


def upscale(image: np.ndarray, gt: np.ndarray, side: int | None = None, factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Image (bicubic) and GT (nearest) enlarged to ``side`` px on the long side, or ``factor`` times."""
    h, w = gt.shape
    size = (round(w * side / max(h, w)), round(h * side / max(h, w))) if side else (w * factor, h * factor)
    if size == (w, h):
        return image, gt
    return (np.clip(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8),
            cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST))


# ----------------------------------------------------------------------------- latency
def latency_images(root: Path) -> list[tuple[str, np.ndarray, tuple[float, float, float, float]]]:
    """(name, RGB, box): the astronaut at 512 and 1152 px, a smoke DIS-VD scene at 512 and 1152 px."""
    import skimage.data

    astro = np.ascontiguousarray(skimage.data.astronaut()[..., :3])
    out = []
    for side in (512, 1152):
        img, _ = upscale(astro, np.zeros(astro.shape[:2], np.uint8), side)
        out.append((f"astronaut {side}^2", img, scale_box(ASTRONAUT_BOX, (512, 512), img.shape[:2])))
    pairs = list_pairs(root / "DIS-VD")
    if pairs:
        image, gt = pairs[0].load()
        for side in (512, 1152):
            img, big = upscale(image, gt, side)
            out.append((f"smoke {pairs[0].stem} {side}^2", img, box_from_mask(big)))
    return out


def time_boxes(model: DisSam, image: np.ndarray, box: tuple, later: int, seed: int = 0) -> dict[str, float]:
    """Seconds from box to refined mask: the first box (a fresh image) and ``later`` jittered boxes."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    model._key = None  # a fresh image, even if the same array was seen before
    start = time.perf_counter()
    first = model.predict(image, box)
    first_s = time.perf_counter() - start
    laters, prompts, refines = [], [], []
    for _ in range(later):
        b = jitter_box(tuple(int(v) for v in box), h, w, rng, scale=0.1)
        start = time.perf_counter()
        pred = model.predict(image, b)
        laters.append(time.perf_counter() - start)
        prompts.append(pred.timings["prompt"])
        refines.append(pred.timings["refine"])
    return {"first_s": first_s, "first_embed_s": first.timings["embed"],
            "later_s_median": statistics.median(laters), "later_s_max": max(laters),
            "later_prompt_s": statistics.median(prompts), "later_refine_s": statistics.median(refines),
            "stage1_hw": list(model._stage1_hw)}


# ----------------------------------------------------------------------------- quality
def quality(model: DisSam, pairs: list, factor: int) -> dict[str, float]:
    """maxF and HCE of the refined maps and of stage 1's masks, scenes and GT upscaled ``factor`` times."""
    refined, coarse = DISMetrics(), DISMetrics()
    start = time.perf_counter()
    for pair in pairs:
        image, gt = upscale(*pair.load(), factor=factor)
        model._key = None
        pred = model.predict(image, box_from_mask(gt))
        refined.step(pred.prob, gt)
        coarse.step(pred.coarse, gt)
    r, c = refined.results(), coarse.results()
    return {"maxF": r["maxF"], "HCE": r["HCE"], "MAE": r["MAE"], "stage1_maxF": c["maxF"], "stage1_HCE": c["HCE"],
            "images": len(pairs), "seconds_per_image": (time.perf_counter() - start) / max(1, len(pairs))}


def setting_name(bound: Any) -> str:
    if bound == "auto":
        return f"default ({DEFAULT_STAGE1_MAX_SIDE})"
    return "full size" if not bound else f"bound {bound}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="refiner (default: the smoke profile's)")
    parser.add_argument("--data", type=Path, help="smoke data root (default: the smoke profile's)")
    parser.add_argument("--bounds", type=int, nargs="*", default=[],
                        help="further stage1_max_side values to compare (full size and the default always run)")
    parser.add_argument("--later", type=int, default=5, help="later boxes per image")
    parser.add_argument("--sets", nargs="*", default=["DIS-VD", "DIS-TE1"])
    parser.add_argument("--images", type=int, default=40, help="images per quality set (first N)")
    parser.add_argument("--upscale", type=int, default=4, help="quality: scenes and GT enlarged this many times")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--vit-b", action="store_true", help="also SAM ViT-B (random weights) as stage 1")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(cpu_line())
    root = data_root(args.data)
    settings: list[Any] = [0, "auto", *[b for b in args.bounds if b not in (0, DEFAULT_STAGE1_MAX_SIDE)]]
    models = {}
    for bound in settings:
        models[bound], source = load_model(args.checkpoint, bound)
    choice = models["auto"].inference_choice
    print(f"refiner: {source}; stage 1: {models['auto'].segmenter!r}; refiner path: {choice['path']} "
          f"({choice.get('source', 'fixed')}); {torch.get_num_threads()} threads")
    results: dict[str, Any] = {"cpu": cpu_line(), "refiner": source, "latency": [], "quality": []}

    print("\nlatency (s): first box (incl. embedding) | later boxes median, max (prompt + refine medians)")
    for name, image, box in [] if args.skip_latency else latency_images(root):
        for bound in settings:
            row = {"image": name, "setting": setting_name(bound),
                   **time_boxes(models[bound], image, box, args.later if bound else max(2, args.later // 2))}
            results["latency"].append(row)
            goal = "met" if row["later_s_median"] < 0.3 else "NOT met"
            print(f"  {name:>24} {row['setting']:>13} (stage 1 at {row['stage1_hw'][0]}x{row['stage1_hw'][1]}): "
                  f"first {row['first_s']:6.3f} | later {row['later_s_median']:6.3f}, max {row['later_s_max']:6.3f} "
                  f"({row['later_prompt_s']:.3f} + {row['later_refine_s']:.3f})  < 0.3 s: {goal}")
    if args.vit_b and not args.skip_latency:
        from segment_anything import sam_model_registry

        from dissam.coarse import build_coarse
        sam = build_coarse("sam", model=sam_model_registry["vit_b"](checkpoint=None), device="cpu")
        model = load_model(args.checkpoint, "auto", sam)[0]
        for name, image, box in latency_images(root)[:2]:
            row = {"image": name, "setting": "SAM ViT-B random, full size", **time_boxes(model, image, box, 3)}
            results["latency"].append(row)
            print(f"  {name:>24} SAM ViT-B (random weights, full size): first {row['first_s']:6.3f} | "
                  f"later {row['later_s_median']:6.3f}")

    if not args.skip_quality:
        print(f"\nquality: maxF (higher is better) and HCE (lower) of the refined maps [stage 1's masks], "
              f"first {args.images} images per set")
        for split in args.sets:
            pairs = list_pairs(root / split)[:args.images]
            rows = [(f"native {pairs[0].load()[1].shape[0]} px", 1, "auto")]
            rows += [(f"{args.upscale}x upscaled", args.upscale, b) for b in settings]
            for label, factor, bound in rows:
                q = {"set": split, "images": label, "setting": setting_name(bound), **quality(models[bound], pairs, factor)}
                results["quality"].append(q)
                print(f"  {split:>8} {label:>14} {q['setting']:>13}: maxF {q['maxF']:.4f}  HCE {q['HCE']:7.1f}  "
                      f"MAE {q['MAE']:.4f}   [stage 1: maxF {q['stage1_maxF']:.4f}, HCE {q['stage1_HCE']:7.1f}]  "
                      f"{q['seconds_per_image']:.2f} s/image")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
