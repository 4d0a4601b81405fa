"""GrabCut and the IS-Net crop as stage 1, and the published IS-Net alone, side by side on a profile's sets.

    python benchmarks/bench_stage1_isnet.py                      # smoke data, 16 images a set, IS-Net at 384
    python benchmarks/bench_stage1_isnet.py --n 40 --sizes 384 1024 --json out.json

Needs the profile's data (``make reproduce`` writes it) and the published weights (``make weights``).
Each image is prompted with its GT's tight box (as at evaluation); the published IS-Net alone sees the
whole image and no box (Tables I/II's general-use row, at each input side). All methods run on the same
images, interleaved, so that they share the machine's load. Prints, per set, the six DIS metrics of each
method against the GT and the mean seconds per image, then the mean over the sets and the CPU.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from dissam.coarse import build_coarse
from dissam.cpuinfo import cpu_line
from dissam.data.enrichment import whole_mask
from dissam.data.folders import list_pairs
from dissam.data.splits import TEST_SPLITS, VAL_SPLIT
from dissam.metrics import METRICS, DISMetrics
from dissam.model.published import find_published_isnet
from dissam.model.published_predict import PublishedISNet
from dissam.repro.config import get_profile, split_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--n", type=int, default=16, help="images per set (the first n)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[384], help="IS-Net input sides to try (crop and whole image)")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    grabcut = build_coarse("grabcut", iters=profile.coarse.grabcut_iters)
    segmenters: dict[str, Any] = {"GrabCut": lambda image, box: grabcut(image, box)}
    for size in args.sizes:
        crop = build_coarse("isnet", input_size=size, device="cpu")
        segmenters[f"IS-Net crop {size}"] = lambda image, box, crop=crop: crop(image, box)
    for size in args.sizes:
        whole = PublishedISNet.from_checkpoint(find_published_isnet(), input_size=size)
        segmenters[f"IS-Net whole image {size}"] = lambda image, box, whole=whole: whole.predict(image)
    rows = []
    for split in [VAL_SPLIT, *TEST_SPLITS, *profile.data.zero_shot_sets]:
        folder = split_dir(profile, split)
        if not folder.is_dir():
            continue
        metrics = {name: DISMetrics() for name in segmenters}
        seconds = dict.fromkeys(segmenters, 0.0)
        pairs = list_pairs(folder)[:args.n]
        for pair in pairs:
            image, gt = pair.load()
            targets = whole_mask(gt)
            if not targets:
                continue
            for name, segmenter in segmenters.items():
                start = time.perf_counter()
                mask = segmenter(image, targets[0].box)
                seconds[name] += time.perf_counter() - start
                metrics[name].step(mask, gt)
        for name in segmenters:
            rows.append({"set": split, "stage 1": name, **metrics[name].results(),
                         "s per image": seconds[name] / max(1, len(pairs))})
        print(pd.DataFrame(rows[-len(segmenters):]).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    mean = table.groupby("stage 1", sort=False)[[*METRICS, "s per image"]].mean().round(3)
    print(f"\nmean over the {table['set'].nunique()} sets ({args.n} images each):\n{mean.to_string()}")
    print(cpu_line())
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_line(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
