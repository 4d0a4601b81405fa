"""The six DIS metrics of the paper's tables: maxF, wF, MAE, S, meanE (pysodmetrics 1.6.2 conventions)
and HCE (the official DIS ``relax_HCE``), exact and fast.

Usage::

    m = DISMetrics()
    for name, pred, gt in pairs:   # uint8 0-255, float in [0, 1] or bool maps, at the GT's size
        m.step(pred, gt, name=name)
    m.results()                    # {'maxF': ..., 'wF': ..., 'MAE': ..., 'S': ..., 'meanE': ..., 'HCE': ...}

Data-set values: maxF is the maximum over the 256 thresholds of the MEAN per-image F curve (beta^2 = 0.3),
meanE the mean of the mean E curve, the others the mean of per-image values. Per image, maxF is the
maximum of its own F curve and meanE the mean of its own E curve. These are the defaults of every table.

The other conventions in use for the same data (:meth:`DISMetrics.other_conventions`, ``OTHER_CONVENTIONS``):
``maxF (P/R-mean)``, the maximum over thresholds of the F of the data-set-mean precision and recall curves
(IS-Net's validation and the DIS-SAM authors' ``saliency_toolbox``), and ``adpE``, the mean of per-image
adaptive E-measures (threshold ``min(2 * mean, 1)`` of the normalised prediction; the authors' E-measure).

The training-time score (maxF and MAE of network-size maps, in torch, batch by batch) is
:mod:`dissam.metrics.running`.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .hce import SkeletonCache, default_skeleton_cache, gt_skeleton, hce
from .inputs import checked_map_uint8, prepare_pair, to_gt_mask
from .pixel import BETA2, adaptive_e, e_curve, f_curves, f_of_mean_curves, mae, pixel_stats, s_measure
from .weighted_f import weighted_fmeasure

METRICS = ("maxF", "wF", "MAE", "S", "meanE", "HCE")
HIGHER_IS_BETTER = {"maxF": True, "wF": True, "MAE": False, "S": True, "meanE": True, "HCE": False}
OTHER_CONVENTIONS = ("maxF (P/R-mean)", "adpE")  # printed beside the defaults (see the module docstring)
HIGHER_IS_BETTER.update({m: True for m in OTHER_CONVENTIONS})

__all__ = ["DISMetrics", "ImageResult", "METRICS", "OTHER_CONVENTIONS", "HIGHER_IS_BETTER", "SkeletonCache",
           "image_metrics", "hce", "weighted_fmeasure", "gt_skeleton", "prepare_pair", "checked_map_uint8", "to_gt_mask"]


@dataclass
class ImageResult:
    """One image's six values, its curves (thresholds 255 down to 0, the reference's order) and the
    per-image values of the other conventions (``adpE``)."""

    values: dict
    curves: dict
    extra: dict = field(default_factory=dict)


class DISMetrics:
    """Accumulates the six metrics over a data set, one ``step(pred, gt)`` per image.

    ``skeleton_cache_dir``: keep GT skeletons (HCE's costly part) on disk as well as in memory.
    ``resize``: resize a prediction of another size to the GT's (bilinear); off by default, so that a
    shape mismatch is an error. ``relax``/``epsilon``: HCE parameters (official 5 and 2.0).
    ``timings`` holds the seconds spent per part (measured with ``clock``), for benchmarks.
    """

    def __init__(self, skeleton_cache_dir: str | Path | None = None, resize: bool = False,
                 relax: int = 5, epsilon: float = 2.0, clock: Callable[[], float] = time.perf_counter):
        self.skeletons = SkeletonCache(skeleton_cache_dir) if skeleton_cache_dir else default_skeleton_cache()
        self.clock = clock
        self.resize = resize
        self.relax = relax
        self.epsilon = epsilon
        self.reset()

    def reset(self) -> None:
        """Forget every image stepped so far."""
        self._records: list[dict] = []
        self._extra: list[dict] = []
        self._sums = {k: np.zeros(256) for k in ("precision", "recall", "F", "E")}
        self.timings: dict[str, float] = defaultdict(float)

    def __len__(self) -> int:
        return len(self._records)

    def _tick(self, part: str, start: float) -> float:
        now = self.clock()
        self.timings[part] += now - start
        return now

    def measure(self, pred: np.ndarray, gt: np.ndarray) -> ImageResult:
        """The six values and the curves of one image, without adding it (thread-safe; see :meth:`add`)."""
        t = self.clock()
        p, g = prepare_pair(pred, gt, resize=self.resize)
        t = self._tick("inputs", t)
        stats = pixel_stats(p, g)
        t = self._tick("histogram", t)
        precision, recall, f = f_curves(stats, BETA2)
        t = self._tick("maxF", t)
        e = e_curve(stats)
        t = self._tick("meanE", t)
        mae_value = mae(stats)
        t = self._tick("MAE", t)
        s_value = s_measure(stats)
        t = self._tick("S", t)
        wf_value = weighted_fmeasure(p, g, stats.values, stats.code)
        t = self._tick("wF", t)
        skeleton = self.skeletons.get(g)
        t = self._tick("skeleton", t)
        hce_value = hce(p > 128, g, skeleton, relax=self.relax, epsilon=self.epsilon)
        self._tick("HCE", t)
        values = {"maxF": float(f.max()), "wF": wf_value, "MAE": mae_value, "S": s_value,
                  "meanE": float(e.mean()), "HCE": int(hce_value)}
        curves = {"precision": precision, "recall": recall, "F": f, "E": e}
        return ImageResult(values, curves, {"adpE": adaptive_e(stats)})

    def add(self, result: ImageResult, name: str | None = None) -> dict:
        """Add a measured image to the data set; returns its record."""
        record = {"name": str(name) if name is not None else f"{len(self._records):05d}", **result.values}
        self._records.append(record)
        self._extra.append(dict(result.extra))
        for key, curve in result.curves.items():
            self._sums[key] += curve
        return dict(record)

    def step(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> dict:
        """Add one image; returns its record (name and the six per-image values)."""
        return self.add(self.measure(pred, gt), name)

    def records(self) -> list[dict]:
        """Per-image rows: ``{'name', 'maxF', 'wF', 'MAE', 'S', 'meanE', 'HCE'}``, in step order."""
        return [dict(r) for r in self._records]

    def curves(self) -> dict[str, np.ndarray]:
        """Mean per-image curves against ``thresholds`` 0..255 (a pixel is foreground when >= threshold
        on the normalised prediction times 255): ``precision``, ``recall``, ``F``, ``E``."""
        n = self._require()
        out = {k: (v / n)[::-1].copy() for k, v in self._sums.items()}
        return {"thresholds": np.arange(256), **out}

    def results(self) -> dict[str, float]:
        """Data-set values of the six metrics (see the module docstring for how each is pooled)."""
        n = self._require()
        mean = {k: float(np.mean([r[k] for r in self._records])) for k in ("wF", "MAE", "S", "HCE")}
        return {"maxF": float(np.max(self._sums["F"] / n)), "wF": mean["wF"], "MAE": mean["MAE"],
                "S": mean["S"], "meanE": float(np.mean(self._sums["E"] / n)), "HCE": mean["HCE"]}

    def other_conventions(self) -> dict[str, float]:
        """Data-set values in the other conventions: ``maxF (P/R-mean)`` (max of the F of the mean precision
        and recall curves) and ``adpE`` (mean per-image adaptive E); NaN for ``adpE`` when an added
        result lacks it."""
        n = self._require()
        f = f_of_mean_curves(self._sums["precision"] / n, self._sums["recall"] / n)
        adaptive = [e.get("adpE", float("nan")) for e in self._extra]
        return {"maxF (P/R-mean)": float(np.max(f)), "adpE": float(np.mean(adaptive))}

    def _require(self) -> int:
        if not self._records:
            raise ValueError("no images evaluated yet: call step(pred, gt) first")
        return len(self._records)


def image_metrics(pred: np.ndarray, gt: np.ndarray, **kwargs) -> dict:
    """The six metrics of one prediction/GT pair (``kwargs`` go to :class:`DISMetrics`)."""
    m = DISMetrics(**kwargs)
    record = m.step(pred, gt)
    record.pop("name")
    return record
