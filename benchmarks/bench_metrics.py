"""Our six DIS metrics vs pysodmetrics 1.6.2, side by side on the same DIS-like 1024^2 pairs, in one run.

pysodmetrics runs with its defaults for maxF (Fmeasure), wF, MAE, S, E and, for HCE, is fed
``(pred > 128)`` as float with ``normalize=False`` (docs/conventions.md, "Evaluation"). Ours: ``dissam.metrics.DISMetrics``.
Each image is measured by both (alternating which goes first); the values are checked to agree (1e-9;
HCE exactly) and the time per image of each metric is printed with the overall ratio.

HCE needs the GT's skeleton, computed once per GT content by ours and cached: "cold" is the first time a
GT is seen (the honest per-image cost when each GT is evaluated once), "warm" a later evaluation of the
same GT (another method, another checkpoint). Both are reported.

Times are CPU seconds of this process (``time.process_time``) with OpenCV and BLAS held to one thread,
so that other load on the machine disturbs them less; ``--clock wall`` uses wall-clock time instead.

    python benchmarks/bench_metrics.py [--n 10] [--size 1024] [--json out.json]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dissam.cpuinfo import cpu_line  # noqa: E402
from dissam.metrics import METRICS, DISMetrics, SkeletonCache  # noqa: E402

PARTS = {"maxF": ("maxF",), "wF": ("wF",), "MAE": ("MAE",), "S": ("S",), "meanE": ("meanE",),
         "HCE": ("skeleton", "HCE"), "shared": ("inputs", "histogram")}


# ----------------------------------------------------------------------------- DIS-like pairs
def _tree(gt: np.ndarray, rng: np.random.Generator, x: float, y: float, angle: float, length: float,
          width: float, depth: int) -> None:
    if depth == 0 or length < 6:
        return
    x2, y2 = x + length * np.cos(angle), y + length * np.sin(angle)
    cv2.line(gt, (int(x), int(y)), (int(x2), int(y2)), 255, max(1, int(round(width))))
    for side in (-1, 1):
        _tree(gt, rng, x2, y2, angle + side * rng.uniform(0.25, 0.7), length * rng.uniform(0.6, 0.8),
              width * 0.7, depth - 1)


def dis_like_pair(seed: int, size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """A GT with what makes DIS hard (a solid body, a branching tree of 1-9 px lines, a wire grid, rings,
    thin legs) and a soft, imperfect prediction (blurred, shifted, thin parts faded, clutter blobs)."""
    rng = np.random.default_rng(seed)
    s = size / 1024
    gt = np.zeros((size, size), np.uint8)
    centre = (int(rng.integers(300, 700) * s), int(rng.integers(350, 650) * s))
    cv2.ellipse(gt, centre, (int(rng.integers(60, 220) * s), int(rng.integers(50, 160) * s)),
                float(rng.uniform(0, 180)), 0, 360, 255, -1)
    _tree(gt, rng, size / 2, size - 10 * s, -np.pi / 2, size / 4, 9 * s, int(rng.integers(6, 10)))
    if seed % 2 == 0:  # a wire grid (fence, net)
        x0, y0, step = int(rng.integers(20, 200) * s), int(rng.integers(20, 200) * s), int(rng.integers(18, 32) * s)
        for k in range(12):
            cv2.line(gt, (x0 + step * k, y0), (x0 + step * k, y0 + 11 * step), 255, max(1, int(2 * s)))
            cv2.line(gt, (x0, y0 + step * k), (x0 + 11 * step, y0 + step * k), 255, max(1, int(2 * s)))
    else:  # thin legs under the body
        for k in range(6):
            foot = (int(centre[0] + rng.integers(-250, 250) * s), int(min(size - 5, centre[1] + rng.integers(150, 350) * s)))
            cv2.line(gt, centre, foot, 255, int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(3, 8))):
        cv2.circle(gt, tuple(int(v) for v in rng.integers(int(80 * s), int(size - 80 * s), 2)),
                   int(rng.integers(8, 60) * s), 255, int(rng.integers(1, 4)))
    soft = cv2.GaussianBlur(gt.astype(np.float32) / 255, (0, 0), rng.uniform(0.8, 2.5))
    soft = cv2.warpAffine(soft, np.float32([[1, 0, rng.integers(-2, 3)], [0, 1, rng.integers(-2, 3)]]), (size, size))
    fade = cv2.resize(rng.random((size // 64, size // 64)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    soft *= np.clip(0.4 + fade, 0, 1.2)
    clutter = cv2.GaussianBlur((rng.random((size, size)) > 0.99985).astype(np.float32), (0, 0), 8 * s) * 120
    pred = np.clip(soft + clutter + rng.normal(0, 0.01, soft.shape), 0, 1)
    return np.round(pred * 255).astype(np.uint8), gt


# ----------------------------------------------------------------------------- the reference side
def reference_image(pred: np.ndarray, gt: np.ndarray, clock) -> tuple[dict[str, float], dict[str, float]]:
    """Values and seconds of each pysodmetrics measure on one image (a fresh object each, as per image)."""
    import py_sod_metrics as psm

    values, seconds = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Fmeasure's deprecation notice
        for key, make, feed, read in (
            ("maxF", psm.Fmeasure, lambda: (pred, gt), lambda m: float(np.max(m.changeable_fms[0]))),
            ("wF", psm.WeightedFmeasure, lambda: (pred, gt), lambda m: float(m.weighted_fms[0])),
            ("MAE", psm.MAE, lambda: (pred, gt), lambda m: float(m.maes[0])),
            ("S", psm.Smeasure, lambda: (pred, gt), lambda m: float(m.sms[0])),
            ("meanE", psm.Emeasure, lambda: (pred, gt), lambda m: float(np.mean(m.changeable_ems[0]))),
            ("HCE", psm.HumanCorrectionEffortMeasure, None, lambda m: float(m.hces[0])),
        ):
            m = make()
            t = clock()
            if feed is None:
                m.step((pred > 128).astype(np.float64), gt > 128, normalize=False)
            else:
                m.step(*feed())
            seconds[key] = clock() - t
            values[key] = read(m)
    return values, seconds


def ours_image(pred: np.ndarray, gt: np.ndarray, cache: SkeletonCache, clock) -> tuple[dict, dict[str, float]]:
    m = DISMetrics(clock=clock)
    m.skeletons = cache
    record = m.step(pred, gt)
    seconds = {key: sum(m.timings.get(p, 0.0) for p in parts) for key, parts in PARTS.items()}
    return record, seconds


# ----------------------------------------------------------------------------- main
def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="number of image pairs")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    print(cpu_line())
    cv2.setNumThreads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    pairs = [dis_like_pair(seed, args.size) for seed in range(args.n)]
    cache = SkeletonCache()  # fresh: every GT is new to it on the first pass
    ref_t = {k: [] for k in METRICS}
    cold_t = {k: [] for k in PARTS}
    warm_t = {k: [] for k in PARTS}
    worst = {k: 0.0 for k in METRICS}
    for i, (pred, gt) in enumerate(pairs):
        if i % 2:  # alternate the order, so that drift in machine load favours neither side
            ours, t_cold = ours_image(pred, gt, cache, clock)
            ref, t_ref = reference_image(pred, gt, clock)
        else:
            ref, t_ref = reference_image(pred, gt, clock)
            ours, t_cold = ours_image(pred, gt, cache, clock)
        _, t_warm = ours_image(pred, gt, cache, clock)  # the same GT again: skeleton from the cache
        for k in METRICS:
            worst[k] = max(worst[k], abs(ours[k] - ref[k]))
            ref_t[k].append(t_ref[k])
        for k in PARTS:
            cold_t[k].append(t_cold[k])
            warm_t[k].append(t_warm[k])
        print(f"image {i}: fg {np.mean(gt > 128):.3f}, HCE {ours['HCE']}, pysodmetrics {sum(t_ref.values()) * 1e3:.0f} ms,"
              f" ours {sum(t_cold.values()) * 1e3:.0f} ms (warm {sum(t_warm.values()) * 1e3:.0f} ms)", flush=True)

    ms = {k: 1e3 * float(np.mean(v)) for k, v in ref_t.items()}
    cold = {k: 1e3 * float(np.mean(v)) for k, v in cold_t.items()}
    warm = {k: 1e3 * float(np.mean(v)) for k, v in warm_t.items()}
    identical = all(worst[k] <= 1e-9 for k in METRICS if k != "HCE") and worst["HCE"] == 0
    print(f"\n{args.n} DIS-like pairs at {args.size}^2, {args.clock} time per image (ms); "
          f"values identical: {'yes' if identical else 'NO'} (max |diff|: "
          + ", ".join(f"{k} {worst[k]:.1e}" for k in METRICS) + ")")
    print(f"{'metric':<26}{'pysodmetrics':>13}{'ours':>9}{'ours, warm':>12}{'speed-up':>10}")
    for k in (*METRICS, "shared"):
        label = {"HCE": "HCE (incl. GT skeleton)", "shared": "shared (inputs+histogram)"}.get(k, k)
        ref_ms = ms.get(k)
        ratio = f"{ref_ms / cold[k]:.1f}x" if ref_ms else ""
        print(f"{label:<26}{(f'{ref_ms:.1f}' if ref_ms else '-'):>13}{cold[k]:>9.1f}{warm[k]:>12.1f}{ratio:>10}")
    total_ref, total_cold, total_warm = sum(ms.values()), sum(cold.values()), sum(warm.values())
    print(f"{'total':<26}{total_ref:>13.1f}{total_cold:>9.1f}{total_warm:>12.1f}{total_ref / total_cold:>9.1f}x")
    print(f"overall: ours {total_ref / total_cold:.2f}x faster than pysodmetrics with every GT new (skeleton "
          f"computed), {total_ref / total_warm:.2f}x with GT skeletons cached")
    n_dis = 2470
    print(f"DIS-VD + DIS-TE1-4 ({n_dis} images) at this size: ~{n_dis * total_cold / 6e4:.0f} min ours vs "
          f"~{n_dis * total_ref / 6e4:.0f} min pysodmetrics (one core; real DIS images vary in size)")
    result = {"n": args.n, "size": args.size, "clock": args.clock, "identical": identical, "max_abs_diff": worst,
              "pysodmetrics_ms": ms, "ours_cold_ms": cold, "ours_warm_ms": warm,
              "speedup_cold": total_ref / total_cold, "speedup_warm": total_ref / total_warm}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
