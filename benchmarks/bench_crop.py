"""Whole-image vs box-crop inference on scenes rendered at 4x the refiner's input size.

    DISSAM_RUNS=runs python benchmarks/bench_crop.py                             # 24 DIS-TE + 16 COIFT scenes
    python benchmarks/bench_crop.py --checkpoint runs/smoke/checkpoints/dissam_refiner.pt --n 8 --json out.json

Why: DIS images are 2,000-6,000 px wide and the paper shrinks the whole image to the network's input, so
structures thinner than the shrink factor are gone before the refiner sees them. ``DisSam(refine_region=
"box")`` refines a square crop around the box instead (:func:`dissam.data.prompts.crop_window`).

Scenes: :func:`dissam.data.procedural.render_scene` at ``4 x size`` (768 px for the smoke refiner's 192).
The generator's stroke widths are absolute pixels (3-7 px, odd), not scaled with the render size, so the
fine parts are 3-7 px at 768 and 0.75-1.75 px at the network's 192 in whole-image mode. Sets: DIS-TE1..4
scenes in equal numbers (the test sets' mix: 1-3 objects of 55-95% of the image side, one whole-GT box)
and COIFT scenes (one object of 45-70% of the side: a box that leaves more to crop). Fixed seeds. Stage 1
is the profile's GrabCut, run once per image at full resolution and shared by every mode (its mask does
not depend on the refine mode); the box is the GT's tight box (as at evaluation). Metrics: the six DIS
metrics of ``pred.prob`` (uint8 0..255, zeros outside the crop) against the GT. Times: seconds per image
of stage 1 (once) and of the refiner step of each mode (input, network, paste-back, final mask), the
modes interleaved per image (in turning order, after an untimed warm-up) so that they share the
machine's load. "HCE lower/higher" counts the images where a crop mode's HCE is below/above whole-image's.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dissam.repro.config import get_profile
from dissam.data.procedural import render_scene, scene_rng
from dissam.data.prompts import box_from_mask, crop_window
from dissam.metrics import METRICS, DISMetrics
from dissam.predictor import DisSam
from dissam.repro.stages import build_stage1


class OnceStage1:
    """Wraps a stage-1 segmenter so that each (image, box) is segmented once: every mode reuses the mask."""

    def __init__(self, segmenter: Any) -> None:
        self.segmenter, self.seconds = segmenter, 0.0
        self._cache: dict[tuple, Any] = {}
        self._image = 0

    def set_image(self, image: np.ndarray) -> None:
        start = time.perf_counter()
        self.segmenter.set_image(image)
        self.seconds += time.perf_counter() - start
        self._image += 1
        self._cache.clear()

    def predict(self, box: tuple) -> Any:
        key = (self._image, tuple(box))
        if key not in self._cache:
            start = time.perf_counter()
            self._cache[key] = self.segmenter.predict(box)
            self.seconds += time.perf_counter() - start
        return self._cache[key]


def scenes(family: str, n: int, size: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` scenes of ``family`` (``dis-te`` = DIS-TE1..4 in turn) at ``size`` px, seeded per scene."""
    out = []
    for i in range(n):
        fam = f"dis-te{i % 4 + 1}" if family == "dis-te" else family
        out.append(render_scene(scene_rng(seed, f"bench-crop-{fam}", i), size, fam))
    return out


def run_set(model: DisSam, stage1: OnceStage1, data: list, modes: list[tuple[str, str, float]]) -> dict:
    """Every mode on every scene of one set: metrics, crop/image area ratio and seconds per image."""
    metrics = {name: DISMetrics() for name, _, _ in [("stage 1", "", 0.0)] + modes}
    seconds = {name: 0.0 for name, _, _ in modes}
    hce = {name: [] for name, _, _ in modes}  # per image, for the paired comparison
    area = {name: 0.0 for name, _, _ in modes}
    stage1.seconds = 0.0
    for _, region, margin in modes:  # warm-up, untimed (stage 1 of the first image is cached, timed once)
        model.refine_region, model.crop_margin = region, margin
        model.predict(data[0][0], box_from_mask(data[0][1]))
    for k, (rgb, gt) in enumerate(data):
        h, w = gt.shape
        box = box_from_mask(gt)
        for j in range(len(modes)):  # the order turns from image to image: no mode always runs first
            name, region, margin = modes[(j + k) % len(modes)]
            model.refine_region, model.crop_margin = region, margin
            pred = model.predict(rgb, box)
            hce[name].append(metrics[name].step(pred.prob, gt, name=str(k))["HCE"])
            seconds[name] += pred.timings["refine"]
            y0, y1, x0, x1 = crop_window(box, h, w, margin, min_side=model.size) if region == "box" else (0, h, 0, w)
            area[name] += (y1 - y0) * (x1 - x0) / (h * w)
        metrics["stage 1"].step(pred.coarse, gt, name=str(k))
    n = len(data)
    rows = {"stage 1": {**metrics["stage 1"].results(), "area": float("nan"), "s_per_image": stage1.seconds / n}}
    for name, _, _ in modes:
        d = np.sign(np.array(hce[name]) - np.array(hce[modes[0][0]]))
        rows[name] = {**metrics[name].results(), "area": area[name] / n, "s_per_image": seconds[name] / n,
                      "hce_lower": int((d < 0).sum()), "hce_higher": int((d > 0).sum())}
    return rows


def print_table(title: str, rows: dict, base: str) -> None:
    """One Markdown table; "HCE lower/higher": images where the mode's HCE is below/above ``base``'s."""
    print(f"\n{title}")
    head = ["mode", *METRICS, "HCE lower/higher", "crop/image area", "s/image"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in rows.items():
        vals = [f"{r[m]:.1f}" if m == "HCE" else f"{r[m]:.4f}" for m in METRICS]
        ratio = "" if name in ("stage 1", base) else f" ({r['s_per_image'] / rows[base]['s_per_image']:.2f}x)"
        area = "-" if np.isnan(r["area"]) else f"{r['area']:.3f}"
        paired = f"{r['hce_lower']}/{r['hce_higher']}" if name not in ("stage 1", base) else "-"
        print(f"| {name} | " + " | ".join(vals) + f" | {paired} | {area} | {r['s_per_image']:.3f}{ratio} |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="refiner checkpoint (default: the profile's refiner_checkpoint)")
    parser.add_argument("--n", type=int, default=24, help="DIS-TE scenes (a quarter from each of TE1..4)")
    parser.add_argument("--n-coift", type=int, default=16, help="COIFT scenes (one smaller object)")
    parser.add_argument("--scale", type=int, default=4, help="render size = scale x the refiner's input size")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    checkpoint = args.checkpoint or profile.refiner_checkpoint
    stage1 = OnceStage1(build_stage1(profile, kind="grabcut"))
    model = DisSam.from_checkpoint(checkpoint, coarse=stage1, device="cpu", stage1_max_side=0)
    size = args.scale * model.size
    modes = [("whole image", "image", 0.0)] + [(f"box crop, margin {m:g}", "box", m) for m in args.margins]
    print(f"refiner {checkpoint} (input {model.size} px); scenes at {size} px; GrabCut stage 1; "
          f"{args.threads} torch threads")
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "input_size": model.size, "render_size": size}
    for title, family, n in (("DIS-TE1..4 scenes", "dis-te", args.n), ("COIFT scenes", "coift", args.n_coift)):
        if n <= 0:
            continue
        start = time.perf_counter()
        rows = run_set(model, stage1, scenes(family, n, size, args.seed), modes)
        print_table(f"{title}: {n} at {size} px ({time.perf_counter() - start:.0f} s)", rows, "whole image")
        out[family] = rows
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
