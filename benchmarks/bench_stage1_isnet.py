"""GrabCut and the IS-Net crop as stage 1, side by side, on a profile's test sets and zero-shot sets.

    python benchmarks/bench_stage1_isnet.py                      # smoke data, 16 images a set, IS-Net at 384 px
    python benchmarks/bench_stage1_isnet.py --n 40 --sizes 384 1024 --json out.json

Needs the profile's data (``make reproduce`` writes it) and the published weights (``make weights``).
Each image is prompted with its GT's tight box (as at evaluation); both stage 1s run on the same images,
interleaved, so that they share the machine's load. Prints, per set, the six DIS metrics of each stage
1's mask against the GT and the mean seconds per box, then the CPU it ran on.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from dissam.coarse import build_coarse
from dissam.cpuinfo import cpu_line
from dissam.data.enrichment import whole_mask
from dissam.data.folders import list_pairs
from dissam.data.splits import TEST_SPLITS, VAL_SPLIT
from dissam.metrics import METRICS, DISMetrics
from dissam.repro.config import get_profile, split_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--n", type=int, default=16, help="images per set (the first n)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[384], help="IS-Net input sides to try")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    segmenters = {"GrabCut": build_coarse("grabcut", iters=profile.coarse.grabcut_iters)}
    for size in args.sizes:
        segmenters[f"IS-Net crop {size}"] = build_coarse("isnet", input_size=size, device="cpu")
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
                         "s per box": seconds[name] / max(1, len(pairs))})
        print(pd.DataFrame(rows[-len(segmenters):]).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    mean = table.groupby("stage 1", sort=False)[[*METRICS, "s per box"]].mean().round(3)
    print(f"\nmean over the {table['set'].nunique()} sets ({args.n} images each):\n{mean.to_string()}")
    print(cpu_line())
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_line(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
