"""The procedural data mix: generation time, object-shape statistics and GrabCut quality per split.

    python benchmarks/bench_data_mix.py                       # smoke-sized data set in a temporary folder
    python benchmarks/bench_data_mix.py --root data/smoke --grid grid.png --json out.json
    python benchmarks/bench_data_mix.py --root data/old --measure-only    # statistics of existing data

Measures: the time to generate the smoke profile's data set (400 train / 40 val / 4x40 test / 3x40
zero-shot at 192 px); per split, two shares of "solid" scenes (the largest GT component fills more than
half of its tight box; more than 30% of its area is in parts at least S/12 thick, ``solid_core_fraction``),
the mean contour complexity (contour length / sqrt(area)) and GrabCut's mean IoU (3 iterations, tight GT
box, as at evaluation) on up to ``--n`` images. ``--grid`` writes a contact sheet
of training scenes with their GT beside them, for looking at.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dissam.coarse import build_coarse
from dissam.repro.config import get_profile
from dissam.cpuinfo import cpu_line
from dissam.data.folders import list_pairs
from dissam.data.procedural import generate_dataset, solid_core_fraction
from dissam.data.prompts import box_from_mask
from dissam.data.splits import DIS5K_SPLITS, TRAIN_SPLIT, ZERO_SHOT_SETS

SPLITS = (*DIS5K_SPLITS, *ZERO_SHOT_SETS)


def largest_fill(gt: np.ndarray) -> float:
    """Area of the largest 8-connected GT component over the area of its tight box."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((gt > 128).astype(np.uint8), connectivity=8)
    if n < 2:
        return 0.0
    s = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return float(s[cv2.CC_STAT_AREA] / (s[cv2.CC_STAT_WIDTH] * s[cv2.CC_STAT_HEIGHT]))


def contour_complexity(gt: np.ndarray) -> float:
    """Contour length over sqrt(area) of the GT: grows with thin, branching, perforated structure."""
    contours, _ = cv2.findContours((gt > 128).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return float(sum(len(c) for c in contours) / np.sqrt(max(1, (gt > 128).sum())))


def split_stats(root: Path, split: str, n: int, grabcut: bool = True) -> dict[str, float]:
    """Solid shares, contour complexity and GrabCut IoU of the first ``n`` images of one split."""
    seg = build_coarse("grabcut", iters=3)
    fills, cores, cplx, ious = [], [], [], []
    for pair in list_pairs(root / split)[:n]:
        image, gt = pair.load()
        fg = gt > 128
        fills.append(largest_fill(gt))
        cores.append(solid_core_fraction(gt))
        cplx.append(contour_complexity(gt))
        if grabcut:
            seg.set_image(image)
            pred = seg.predict(box_from_mask(fg)).mask > 0
            ious.append((pred & fg).sum() / max(1, (pred | fg).sum()))
    out = {"images": len(fills), "fill_share": round(float(np.mean(np.array(fills) > 0.5)), 3),
           "solid_core_share": round(float(np.mean(np.array(cores) > 0.3)), 3),
           "contour_complexity": round(float(np.mean(cplx)), 2)}
    if grabcut:
        out["grabcut_iou"] = round(float(np.mean(ious)), 4)
    return out


def contact_sheet(root: Path, split: str, n: int, path: Path, cols: int = 4) -> None:
    """``n`` scenes of ``split``, each as image | GT, ``cols`` pairs a row, written to ``path``."""
    tiles = []
    for pair in list_pairs(root / split)[:n]:
        image, gt = pair.load()
        gt3 = np.repeat(gt[..., None], 3, 2)
        tiles.append(np.concatenate([image, np.full((image.shape[0], 2, 3), 255, np.uint8), gt3], 1))
    pad = np.zeros_like(tiles[0])
    tiles += [pad] * (-len(tiles) % cols)
    rows = [np.concatenate([np.pad(t, ((3, 3), (3, 3), (0, 0))) for t in tiles[i:i + cols]], 1)
            for i in range(0, len(tiles), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(rows, 0)[..., ::-1])


def main() -> None:
    """Generate (or reuse) the smoke data, print and optionally save the statistics."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="generate here (default: a temporary folder)")
    ap.add_argument("--n", type=int, default=40, help="images per split for the statistics")
    ap.add_argument("--grid", type=Path, default=None, help="write a contact sheet of 24 DIS-TR scenes here")
    ap.add_argument("--measure-only", action="store_true",
                    help="measure the data already under --root (e.g. made by an older generator version)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    print(cpu_line())
    if args.measure_only and args.root is None:
        ap.error("--measure-only needs --root")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        results: dict = {}
        if not args.measure_only:
            t = time.perf_counter()
            summary = generate_dataset(root, get_profile("smoke").data, progress=False)
            results.update(generate_s=round(time.perf_counter() - t, 2), reused=summary["reused"])
        for split in SPLITS:
            results[split] = split_stats(root, split, args.n, grabcut=split != TRAIN_SPLIT)
            print(split, results[split], flush=True)
        if args.grid:
            contact_sheet(root, TRAIN_SPLIT, 24, args.grid)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
