"""How much of the refined maps' deficit in wF and mean E is softness: the smoke refiner re-scored sharper.

    python benchmarks/soft_maps.py                  # after `make reproduce` (reads runs/smoke's predictions)
    python benchmarks/soft_maps.py --profile smoke --temperatures 2 4

Why: on the smoke data the refined maps beat stage 1 on maxF, S and HCE but stay below GrabCut's binary
masks on wF and mean E. Both measures punish grey pixels where a binary mask is right (mean E averages
over 256 thresholds, so an interior at 0.98 drops out of the top ones). This script re-scores the saved
refined maps with their logits multiplied by T (T = 2: a refiner twice as sure of every pixel, same
decisions) and hard at 0.5 (T -> infinity), and lists, per split, the measures still worse than stage 1.
If sharpening closes the gap, what is missing is confidence (it comes with training), not where the
refiner puts the object. Analysis only: the tables score the maps as the network gives them, as the
paper's evaluation does.
"""
from __future__ import annotations

import argparse

import numpy as np

from dissam.repro import config, runs
from dissam.repro.config import get_profile
from dissam.data.images import read_mask
from dissam.data.folders import list_pairs
from dissam.data.splits import TEST_SPLITS, VAL_SPLIT
from dissam.evaluation import evaluate_pairs

HIGHER = ("maxF", "wF", "S", "meanE")
LOWER = ("MAE", "HCE")


def sharpened(pred: np.ndarray, temperature: float) -> np.ndarray:
    """A uint8 map with its logits multiplied by ``temperature``; ``inf``: hard at 0.5."""
    if np.isinf(temperature):
        return np.where(pred >= 128, 255, 0).astype(np.uint8)
    p = np.clip(pred.astype(np.float64) / 255.0, 1e-4, 1 - 1e-4)
    logits = np.log(p / (1 - p)) * temperature
    return (255.0 / (1.0 + np.exp(-logits))).astype(np.uint8)


def score(profile, split: str, maps: dict[str, np.ndarray]) -> dict[str, float]:
    pairs = list_pairs(config.split_dir(profile, split))
    return evaluate_pairs(((p.stem, maps[p.stem], read_mask(p.gt_path)) for p in pairs), progress=False)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[2.0])
    args = parser.parse_args()
    profile = get_profile(args.profile)
    temperatures = [1.0, *args.temperatures, float("inf")]
    print(f"{'split':8s} {'maps':12s} " + " ".join(f"{m:>6s}" for m in (*HIGHER, *LOWER)) + "  worse than stage 1")
    for split in (VAL_SPLIT, *TEST_SPLITS):
        stage1 = score(profile, split, runs.predictions(profile, runs.STAGE1, split))
        refined = runs.predictions(profile, runs.MAIN, split)
        print(f"{split:8s} {'stage 1':12s} " + " ".join(f"{stage1[m]:6.3f}" for m in (*HIGHER, *LOWER)))
        for t in temperatures:
            s = score(profile, split, refined if t == 1 else {k: sharpened(v, t) for k, v in refined.items()})
            worse = [m for m in HIGHER if s[m] < stage1[m]] + [m for m in LOWER if s[m] > stage1[m]]
            label = "refined" if t == 1 else ("hard at 0.5" if np.isinf(t) else f"logits x{t:g}")
            print(f"{split:8s} {label:12s} " + " ".join(f"{s[m]:6.3f}" for m in (*HIGHER, *LOWER))
                  + "  " + (", ".join(worse) or "none"), flush=True)


if __name__ == "__main__":
    main()
