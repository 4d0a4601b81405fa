"""The paper's runs scored on a profile's splits: what the tables are made of.

:func:`evaluate_method`, :func:`evaluate_pooled` and :func:`evaluate_table` score a run's cached
predictions (:mod:`dissam.repro.runs`) with :mod:`dissam.evaluation`, in threads on every core, keep GT
skeletons on disk under the run folder, and store each split's per-image values and curves so that a
pooled set is never measured twice.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.folders import list_pairs
from ..data.images import read_mask
from ..data.splits import TEST_SPLITS, VAL_SPLIT
from ..evaluation import default_workers, measure_all, records_and_summary
from ..metrics import METRICS, DISMetrics, ImageResult
from . import runs, stages
from .config import Profile, measures_path, prediction_dir, skeleton_dir, split_dir

CURVES = ("precision", "recall", "F", "E")


def _save_measures(path: Path, names: list[str], results: list[ImageResult]) -> None:
    """Per-image values, adaptive E and curves (``[n, 256]`` each, thresholds 255..0), written atomically."""
    arrays = {"names": np.array(names), "values": np.array([[r.values[k] for k in METRICS] for r in results]),
              "adpE": np.array([r.extra.get("adpE", np.nan) for r in results], dtype=np.float64)}
    arrays.update({k: np.stack([r.curves[k] for r in results]) for k in CURVES})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_measures(path: Path, names: list[str]) -> list[ImageResult] | None:
    """The stored results of ``names`` (in that order), or None when the file is absent or is for other images."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        if [str(n) for n in data["names"]] != names:
            return None
        values, adaptive = data["values"], data["adpE"]
        curves = {k: data[k] for k in CURVES}
    return [ImageResult({k: (int(v) if k == "HCE" else float(v)) for k, v in zip(METRICS, values[i])},
                        {k: curves[k][i] for k in CURVES}, {"adpE": float(adaptive[i])}) for i in range(len(names))]


def _summary(metrics: DISMetrics, conventions: bool) -> dict[str, float]:
    return {**metrics.results(), **(metrics.other_conventions() if conventions else {})}


def evaluate_method(profile: Profile, method: str, split: str, conventions: bool = False,
                    workers: int | None = None) -> dict[str, float]:
    """Six-metric summary of one method on one split (with ``conventions``, also the values in
    ``OTHER_CONVENTIONS``). Per-image rows go to a CSV beside the predictions, and what pooling needs
    (:func:`measures_path`) beside it. Images are measured in ``workers`` threads (default: every core);
    GT skeletons come from the profile's disk cache (:func:`skeleton_dir`)."""
    preds = runs.predictions(profile, method, split)
    pairs = list_pairs(split_dir(profile, split))
    loaders = ((lambda p=p: (p.stem, preds[p.stem], read_mask(p.gt_path))) for p in pairs)
    results: list[ImageResult] = []
    metrics = measure_all(loaders, len(pairs), False, split, skeleton_dir(profile), False,
                           default_workers() if workers is None else workers, keep=results)
    records, _ = records_and_summary(metrics)
    records.to_csv(prediction_dir(profile, method, split).with_suffix(".csv"), index=False)
    _save_measures(measures_path(profile, method, split), [p.stem for p in pairs], results)
    return _summary(metrics, conventions)


def _split_results(profile: Profile, method: str, split: str) -> list[ImageResult]:
    """One split's per-image results: stored by :func:`evaluate_method` when they are newer than every
    prediction of the split, else measured now (and stored)."""
    stems = [p.stem for p in list_pairs(split_dir(profile, split))]
    path = measures_path(profile, method, split)
    pred_dir = prediction_dir(profile, method, split)
    newest = max((f.stat().st_mtime for f in pred_dir.glob("*.png")), default=float("inf"))
    stored = _load_measures(path, stems) if path.is_file() and path.stat().st_mtime >= newest else None
    if stored is None:
        evaluate_method(profile, method, split)
        stored = _load_measures(path, stems)
    return stored


def evaluate_pooled(profile: Profile, method: str, splits: list[str], conventions: bool = False) -> dict[str, float]:
    """Summary of one method over the images of several splits pooled as one data set, built from each
    split's stored per-image results (no second measurement); identical to measuring them again."""
    metrics = DISMetrics()
    for split in splits:
        stems = [p.stem for p in list_pairs(split_dir(profile, split))]
        for stem, result in zip(stems, _split_results(profile, method, split)):
            metrics.add(result, f"{split}/{stem}")
    return _summary(metrics, conventions)


def evaluate_table(profile: Profile, methods: dict[str, str], splits: list[str],
                   conventions: bool = False) -> pd.DataFrame:
    """Long table (method, dataset, six metrics; with ``conventions`` also ``OTHER_CONVENTIONS``) for
    ``methods`` {row label: run name or ``runs.STAGE1``}."""
    rows = []
    for label, method in methods.items():
        for split in splits:
            rows.append({"method": label, "dataset": split, **evaluate_method(profile, method, split, conventions)})
    return pd.DataFrame(rows)


def evaluate_main(profile: Profile) -> pd.DataFrame:
    """Stage 1 alone and the main DIS-SAM model on the validation and test splits (``dissam evaluate``)."""
    if not profile.refiner_checkpoint.exists():
        raise FileNotFoundError(f"no trained model at {profile.refiner_checkpoint}: run "
                                f"`python -m dissam train --profile {profile.name}` first")
    splits = stages.available_splits(profile, (VAL_SPLIT, *TEST_SPLITS))
    stages.cache_stage1(profile, splits)
    return evaluate_table(profile, {runs.stage1_label(profile): runs.STAGE1, "DIS-SAM": runs.MAIN}, splits)
