"""Evaluation with the six DIS metrics: pairs in memory, a folder of predictions, any predictor.

Each entry point returns ``(records, summary)``: a per-image DataFrame (``name`` + six metrics) and the
data-set values ``{'maxF', 'wF', 'MAE', 'S', 'meanE', 'HCE'}`` (:class:`dissam.metrics.DISMetrics`).
Metrics are taken at the GT's original resolution. ``workers`` > 1 measures images in threads (the heavy
parts run in OpenCV, scikit-image and numpy without the GIL, so two threads halve the time per image and
beat two processes, which would copy the images: docs/benchmarks.md, "Evaluation"); results do not depend
on it. :func:`seconds_per_image` times the path on synthetic
DIS-size images. The paper's runs on a profile are scored by :mod:`dissam.repro.evaluate`; the
training-time score is :mod:`dissam.metrics.running`.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import cv2
import numpy as np
import pandas as pd

from .data.folders import Pair, list_pairs
from .data.images import IMAGE_EXTS, DataError, read_mask
from .metrics import METRICS, DISMetrics, ImageResult, checked_map_uint8

Item = tuple[str, np.ndarray, np.ndarray]  # (name, prediction, GT)


def _progress(iterable: Iterable, enabled: bool, total: int | None, desc: str) -> Iterable:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img")


def _measured(metrics: DISMetrics, items: Iterable[Callable[[], Item]], workers: int) -> Iterator[tuple[str, ImageResult]]:
    """(name, result) per item, in input order; items are zero-argument loaders, run in the pool."""
    def run(load: Callable[[], Item]) -> tuple[str, ImageResult]:
        name, pred, gt = load()
        try:
            return name, metrics.measure(pred, gt)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from err

    if workers <= 1:
        yield from map(run, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future] = deque()
        for load in items:
            pending.append(pool.submit(run, load))
            if len(pending) >= 2 * workers:  # bounded read-ahead: large images are not all held at once
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def records_and_summary(metrics: DISMetrics) -> tuple[pd.DataFrame, dict[str, float]]:
    """The per-image table (``name`` + six metrics) and the data-set summary of what ``metrics`` holds."""
    records = pd.DataFrame(metrics.records(), columns=["name", *METRICS])
    return records, metrics.results()


def measure_all(loaders: Iterable[Callable[[], Item]], total: int | None, progress: bool, desc: str,
                 skeleton_cache_dir: str | Path | None, resize: bool, workers: int,
                 keep: list[ImageResult] | None = None) -> DISMetrics:
    """Every item (a zero-argument loader of ``(name, prediction, gt)``) measured in ``workers`` threads and
    added in input order; ``keep`` also receives each image's result."""
    metrics = DISMetrics(skeleton_cache_dir=skeleton_cache_dir, resize=resize)
    for name, result in _progress(_measured(metrics, loaders, workers), progress, total, desc):
        metrics.add(result, name)
        if keep is not None:
            keep.append(result)
    if not len(metrics):
        raise ValueError("nothing to evaluate: no prediction/GT pairs were given")
    return metrics


def _run(loaders: Iterable[Callable[[], Item]], total: int | None, progress: bool, desc: str,
         skeleton_cache_dir: str | Path | None, resize: bool, workers: int) -> tuple[pd.DataFrame, dict[str, float]]:
    return records_and_summary(measure_all(loaders, total, progress, desc, skeleton_cache_dir, resize, workers))


def evaluate_pairs(items: Iterable[Item], progress: bool = True, skeleton_cache_dir: str | Path | None = None,
                   resize: bool = False, workers: int = 1) -> tuple[pd.DataFrame, dict[str, float]]:
    """Six metrics over ``(name, prediction, gt)`` triples (uint8, float in [0, 1] or bool maps)."""
    total = len(items) if hasattr(items, "__len__") else None
    loaders = ((lambda item=item: item) for item in items)
    return _run(loaders, total, progress, "evaluate", skeleton_cache_dir, resize, workers)


def _gt_files(data_dir: Path) -> dict[str, Path]:
    """GT masks of an im/gt folder by stem (``list_pairs`` when there is an ``im`` folder, else ``gt/*``)."""
    if (data_dir / "im").is_dir():
        return {p.stem: p.gt_path for p in list_pairs(data_dir)}
    gt_dir = data_dir / "gt"
    if not gt_dir.is_dir():
        raise DataError(f"no GT folder {gt_dir} (expected <split>/gt, as in DIS5K)")
    gts = {p.stem: p for p in sorted(gt_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    if not gts:
        raise DataError(f"no GT masks in {gt_dir}")
    return gts


def read_prediction(path: str | Path) -> np.ndarray:
    """A saved prediction as uint8 ``[H, W]``, read as the reference tools read it (OpenCV grayscale;
    unlike :func:`read_mask`, a faint map with values 0/1 is not rescaled)."""
    pred = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pred is None:
        raise DataError(f"missing or unreadable prediction {path}")
    return pred


def _missing_error(missing: list[str], pred_dir: Path) -> DataError:
    shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
    return DataError(f"missing predictions in {pred_dir} for {len(missing)} GT mask(s): {shown}")


def evaluate_folder(pred_dir: str | Path, data_dir: str | Path, progress: bool = True,
                    skeleton_cache_dir: str | Path | None = None, resize: bool = False,
                    workers: int = 1) -> tuple[pd.DataFrame, dict[str, float]]:
    """Six metrics of ``<pred_dir>/<stem>.png`` against ``<data_dir>/gt/<stem>.png`` for every GT stem.

    A missing prediction is an error naming them all; predictions without a GT are ignored. The
    prediction must have the GT's size unless ``resize`` (bilinear, to the GT's size)."""
    pred_dir, data_dir = Path(pred_dir), Path(data_dir)
    if not pred_dir.is_dir():
        raise DataError(f"no prediction folder {pred_dir}")
    gts = _gt_files(data_dir)
    preds = {p.stem: p for p in pred_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS}
    missing = [stem for stem in gts if stem not in preds]
    if missing:
        raise _missing_error(missing, pred_dir)
    loaders = ((lambda s=stem: (s, read_prediction(preds[s]), read_mask(gts[s]))) for stem in gts)
    return _run(loaders, len(gts), progress, data_dir.name or "evaluate", skeleton_cache_dir, resize, workers)


def save_prediction(pred: np.ndarray, path: str | Path) -> Path:
    """Write a prediction as an 8-bit grayscale PNG (float maps in [0, 1] are scaled by 255)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), checked_map_uint8(pred)):
        raise OSError(f"could not write {path}")
    return path


def evaluate_predictor(predict: Callable[[Pair], np.ndarray], data_dir: str | Path, progress: bool = True,
                       pred_dir: str | Path | None = None, csv_path: str | Path | None = None,
                       skeleton_cache_dir: str | Path | None = None,
                       resize: bool = False) -> tuple[pd.DataFrame, dict[str, float]]:
    """Run ``predict(pair) -> uint8 [H, W] mask`` on every image of an im/gt folder and evaluate it.

    Model-agnostic: the caller wraps stage 1 and the refiner. ``pred_dir``: also write the predictions
    (``<stem>.png``); ``csv_path``: write the per-image metrics."""
    pairs = list_pairs(Path(data_dir))

    def load(pair: Pair) -> Item:
        pred = np.asarray(predict(pair))
        if pred_dir is not None:
            save_prediction(pred, Path(pred_dir) / f"{pair.stem}.png")
        return pair.stem, pred, read_mask(pair.gt_path)

    loaders = ((lambda p=pair: load(p)) for pair in pairs)  # the predictor runs in this thread, in order
    records, summary = _run(loaders, len(pairs), progress, Path(data_dir).name or "evaluate",
                            skeleton_cache_dir, resize, workers=1)
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        records.to_csv(csv_path, index=False)
    return records, summary


def summarize(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> pd.DataFrame:
    """``{method: {dataset: summary}}`` as a long table with columns method, dataset and the six metrics."""
    rows = [{"method": method, "dataset": dataset, **{k: float(summary[k]) for k in METRICS}}
            for method, per_set in results.items() for dataset, summary in per_set.items()]
    return pd.DataFrame(rows, columns=["method", "dataset", *METRICS])


def default_workers() -> int:
    """Threads to measure images in: every core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


# ----------------------------------------------------------------------------- cost of one image
def synthetic_pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A DIS-like (uint8 prediction, uint8 GT) pair of ``height`` x ``width`` pixels: a solid object with a
    lattice of thin lines as GT (placed by ``seed``, so that every seed has its own GT and skeleton), and a
    blurred, noisy copy of it as prediction."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((height, width), np.uint8)
    centre = (int(rng.integers(width // 3, 2 * width // 3 + 1)), int(rng.integers(height // 3, 2 * height // 3 + 1)))
    cv2.ellipse(gt, centre, (width // 5, height // 4), 0, 0, 360, 255, -1)
    for x in range(int(rng.integers(0, width // 10 + 1)), width, max(width // 40, 2)):
        slant = int(rng.integers(-width // 20, width // 20 + 1))
        cv2.line(gt, (x, height // 10), (x + slant, 9 * height // 10), 255, 3)
    pred = cv2.GaussianBlur(gt, (0, 0), 3).astype(np.int16) + rng.integers(-20, 21, gt.shape, dtype=np.int16)
    return np.clip(pred, 0, 255).astype(np.uint8), gt


def seconds_per_image(height: int = 2250, width: int = 3350, images: int = 4, workers: int = 1,
                      cached_skeletons: bool = False, clock: Callable[[], float] = time.perf_counter) -> float:
    """Wall-clock seconds per image of the profile evaluation path (six metrics, GT skeletons on disk) on
    ``images`` synthetic pairs of ``height`` x ``width`` (default ~7.5 MP, a DIS5K image) in ``workers``
    threads. ``cached_skeletons``: the skeletons are already on disk (every method after the first).
    ``clock``: ``time.process_time`` gives CPU core-seconds (all threads) instead of wall-clock seconds."""
    pairs = [(f"{i:03d}", *synthetic_pair(height, width, seed=i)) for i in range(images)]
    with tempfile.TemporaryDirectory() as cache:
        if cached_skeletons:
            evaluate_pairs(pairs, progress=False, skeleton_cache_dir=cache, workers=workers)
        start = clock()
        evaluate_pairs(pairs, progress=False, skeleton_cache_dir=cache, workers=workers)
        return (clock() - start) / images
