"""All evaluation with the six DIS metrics: pairs in memory, a folder of predictions, any predictor, and
the paper's runs on a profile's splits.

The generic entry points return ``(records, summary)``: a per-image DataFrame (``name`` + six metrics)
and the data-set values ``{'maxF', 'wF', 'MAE', 'S', 'meanE', 'HCE'}`` (:class:`dissam.metrics.DISMetrics`).
Metrics are taken at the GT's original resolution. ``workers`` > 1 measures images in threads (the
heavy parts run in OpenCV, scikit-image and numpy without the GIL); results do not depend on it.
:func:`evaluate_method`, :func:`evaluate_pooled` and :func:`evaluate_table` score a run's cached
predictions (:mod:`dissam.runs`) on a profile's splits: what the tables are made of. The training-time
score is :mod:`dissam.metrics.running`.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import cv2
import numpy as np
import pandas as pd

from . import stages
from .config import Profile
from .data.folders import IMAGE_EXTS, DataError, Pair, list_pairs, read_mask
from .data.splits import TEST_SPLITS, VAL_SPLIT
from .metrics import METRICS, DISMetrics, ImageResult, to_uint8

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


def _finish(metrics: DISMetrics) -> tuple[pd.DataFrame, dict[str, float]]:
    records = pd.DataFrame(metrics.records(), columns=["name", *METRICS])
    return records, metrics.results()


def _run(loaders: Iterable[Callable[[], Item]], total: int | None, progress: bool, desc: str,
         skeleton_cache_dir: str | Path | None, resize: bool, workers: int) -> tuple[pd.DataFrame, dict[str, float]]:
    metrics = DISMetrics(skeleton_cache_dir=skeleton_cache_dir, resize=resize)
    for name, result in _progress(_measured(metrics, loaders, workers), progress, total, desc):
        metrics.add(result, name)
    if not len(metrics):
        raise ValueError("nothing to evaluate: no prediction/GT pairs were given")
    return _finish(metrics)


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
    if not cv2.imwrite(str(path), to_uint8(pred)):
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


# ----------------------------------------------------------------------------- the paper's runs on a profile
def evaluate_method(profile: Profile, method: str, split: str) -> dict[str, float]:
    """Six-metric summary of one method on one split; per-image rows go to a CSV beside the predictions."""
    from . import runs

    preds = runs.predictions(profile, method, split)
    pairs = list_pairs(stages.split_dir(profile, split))
    records, summary = evaluate_pairs(((p.stem, preds[p.stem], read_mask(p.gt_path)) for p in pairs),
                                      progress=False)
    records.to_csv(runs.prediction_dir(profile, method, split).with_suffix(".csv"), index=False)
    return summary


def evaluate_pooled(profile: Profile, method: str, splits: list[str]) -> dict[str, float]:
    """Six-metric summary of one method over the images of several splits pooled as one data set."""
    from . import runs

    items = []
    for split in splits:
        preds = runs.predictions(profile, method, split)
        items += [(f"{split}/{p.stem}", preds[p.stem], read_mask(p.gt_path))
                  for p in list_pairs(stages.split_dir(profile, split))]
    return evaluate_pairs(iter(items), progress=False)[1]


def evaluate_table(profile: Profile, methods: dict[str, str], splits: list[str]) -> pd.DataFrame:
    """Long table (method, dataset, six metrics) for ``methods`` {row label: run name or ``runs.STAGE1``}."""
    rows = []
    for label, method in methods.items():
        for split in splits:
            rows.append({"method": label, "dataset": split, **evaluate_method(profile, method, split)})
    return pd.DataFrame(rows)


def evaluate_main(profile: Profile) -> pd.DataFrame:
    """Stage 1 alone and the main DIS-SAM model on the validation and test splits (``dissam evaluate``)."""
    from . import runs

    if not profile.refiner_checkpoint.exists():
        raise FileNotFoundError(f"no trained model at {profile.refiner_checkpoint}: run "
                                f"`python -m dissam train --profile {profile.name}` first")
    splits = stages.available_splits(profile, (VAL_SPLIT, *TEST_SPLITS))
    stages.cache_stage1(profile, splits)
    return evaluate_table(profile, {runs.stage1_label(profile): runs.STAGE1, "DIS-SAM": runs.MAIN}, splits)
