"""This machine's per-core CPU cost of the paper profile's work at DIS5K size, through the public code paths.

:func:`measure_rates` renders a few procedural scenes at DIS5K size (3000 x 2500 = 7.5 MP by default,
:func:`dissam.data.procedural.generate_dataset` with ``image_wh``) and times, in CPU core-seconds
(the process's CPU time over all its threads, with one torch and one OpenCV thread, so another job on
the machine does not inflate them and a projection can spread them over any number of cores):

- stage 1 (:func:`dissam.coarse.cache.cache_split`, whole and enriched boxes in one pass) with a stand-in
  segmenter that does SAM's CPU work (``ResizeLongestSide`` preprocessing per image; per box the
  full-size float logits thresholded to a uint8 mask, as :class:`dissam.coarse.sam.SamSegmenter` does)
  and answers each box with the GT inside it. The SAM forward itself is GPU time, an assumption of the
  projection. Split into the main thread's share (the stand-in's own CPU time: serial with the GPU) and
  the read-ahead and writer threads' share (decode, hash, GT components, cache look-up, PNG writes);
- the resized training cache (``RefinerDataset(cache_dir=...)``, :mod:`dissam.data.resized_cache`), built
  with one thread: with the stage-1 mask channel (reading the cached masks) and without it;
- the training loader's worker cost per sample: ``TrainingItems[(i, hflip, vflip)]`` and its share of
  ``default_collate`` (the conversion to floats runs on the device);
- what evaluation does per image on the main process: the refiner's prediction data set read as
  :mod:`dissam.repro.runs` reads it (float tensors, batches of 16), the upsampling to the image size with the
  PNG write, and a stage-1 prediction read from the cache and written;
- the six metrics (:func:`dissam.evaluation.seconds_per_image`, fresh and with GT skeletons on disk) and
  reading a prediction and its GT back; GT components of a training image (notebook 00's summary);
- by FLOPs (torch's counter, at 64 px: the ratios do not depend on the size), the GT encoder's training
  step and a refiner forward, each relative to a refiner training step (the GPU assumptions scale by them).

The returned dict is flat numbers (seconds per unit) plus ``threads``, ``image_wh`` and counts; it is the
``rates`` of :mod:`dissam.repro.projection`. Small: 6 training and 3 validation images take about a minute on
two cores.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..coarse.base import CoarseResult, CoarseSegmenter
from ..coarse.cache import CachedCoarse, MaskStore, cache_split
from ..data.datasets import RefinerDataset, TrainingItems, draw_flips
from ..data.enrichment import enrichment_summary, whole_mask
from ..data.folders import list_pairs
from ..data.images import read_mask
from ..data.procedural import generate_dataset
from ..data.prompts import Box
from ..data.splits import TRAIN_SPLIT, VAL_SPLIT
from ..data.transforms import to_original
from ..evaluation import read_prediction, save_prediction, seconds_per_image
from ..model import build_gt_encoder, build_refiner
from .config import DataConfig

DIS5K_WH = (3000, 2500)  # a DIS5K-size image: 7.5 MP (DIS5K images are 2-4k px on a side)


@dataclass(frozen=True)
class RateSpec:
    """What :func:`measure_rates` renders and times. ``image_wh`` and ``size`` are small in tests."""

    image_wh: tuple[int, int] = DIS5K_WH  # (W, H) of the written images
    size: int = 1024  # network size: scenes are rendered at it, and the resized cache holds it
    n_train: int = 6
    n_val: int = 3
    loader_batches: int = 6  # batches of ``batch_size`` through TrainingItems + default_collate
    batch_size: int = 6
    eval_images: int = 2  # synthetic pairs for the six metrics
    seed: int = 0


class _Clock:
    """CPU core-seconds of this process (all threads) between ``start`` and ``stop``."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def running(self) -> Iterator[None]:
        start = time.process_time()
        try:
            yield
        finally:
            self.seconds += time.process_time() - start


def _core_seconds(func: Callable[[], Any]) -> tuple[float, Any]:
    clock = _Clock()
    with clock.running():
        result = func()
    return clock.seconds, result


@contextmanager
def one_thread() -> Iterator[dict[str, int]]:
    """torch and OpenCV on one thread inside the block (restored after); yields what was set."""
    import cv2
    import torch

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield {"torch": 1, "opencv": 1}
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


class StandInSam(CoarseSegmenter):
    """SAM's CPU work without SAM: ``set_image`` runs SAM's preprocessing (``ResizeLongestSide``), and a
    box gets full-size float32 logits (the GT inside the box: what a perfect SAM returns) thresholded as
    :class:`dissam.coarse.sam.SamSegmenter` thresholds them. ``gts`` maps an image's :func:`sample_key`
    to its GT. ``serial_seconds`` sums the thread CPU time of its calls: the stage-1 pass's main thread."""

    def __init__(self, gts: dict[bytes, np.ndarray], size: int = 1024) -> None:
        super().__init__()
        from segment_anything.utils.transforms import ResizeLongestSide

        self.gts, self.size = gts, size
        self.transform = ResizeLongestSide(size)
        self.serial_seconds = 0.0
        self._gt: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"stand-in-sam|size={self.size}"

    def _embed(self, image: np.ndarray) -> None:
        start = time.thread_time()
        self.transform.apply_image(image)  # SamPredictor.set_image's CPU part; the encoder runs on the GPU
        self._gt = self.gts[sample_key(image)]
        self.serial_seconds += time.thread_time() - start

    def _predict(self, box: Box) -> CoarseResult:
        start = time.thread_time()
        x0, y0, x1, y1 = (int(v) for v in box)
        logits = np.full(self._gt.shape, -1.0, np.float32)  # the [H, W] float logits SAM hands back
        logits[y0:y1, x0:x1] = np.where(self._gt[y0:y1, x0:x1] >= 128, 1.0, -1.0)
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        mask = np.where(logits > 0.0, 255, 0).astype(np.uint8)
        self.serial_seconds += time.thread_time() - start
        return CoarseResult(mask, logits, 1.0)


def sample_key(image: np.ndarray) -> bytes:
    """A cheap identity of a decoded image (a sparse grid of its pixels and its shape)."""
    return repr(image.shape).encode() + np.ascontiguousarray(image[::97, ::89]).tobytes()


def _render(root: Path, spec: RateSpec) -> None:
    cfg = DataConfig(size=spec.size, n_train=spec.n_train, n_val=spec.n_val, n_test=0, n_zero_shot=0,
                     zero_shot_sets=(), seed=spec.seed)
    generate_dataset(root, cfg, progress=False, workers=min(4, os.cpu_count() or 1), image_wh=spec.image_wh)


def _stage1(data: Path, cache: Path, pairs: dict[str, list]) -> tuple[dict[str, float], StandInSam]:
    """Stage-1 passes over DIS-TR (whole and enriched boxes) and DIS-VD (whole) with the stand-in."""
    gts = {}
    for split_pairs in pairs.values():
        for pair in split_pairs:
            image, gt = pair.load()
            gts[sample_key(image)] = gt
    segmenter = StandInSam(gts)
    clock, images, boxes = _Clock(), 0, 0
    for split, enrichments in ((TRAIN_SPLIT, (None, "filtered")), (VAL_SPLIT, (None,))):
        with clock.running():
            manifests = cache_split(segmenter, data / split, cache / split, enrichments, progress=False, workers=1)
        images += manifests[0]["images"]
        boxes += sum(m["computed"] for m in manifests)
    serial = segmenter.serial_seconds  # the main thread's share of the passes
    # The writer threads' share per box: the same masks written again into a scratch store.
    store, masks = MaskStore(cache / "rewrite", segmenter.key), []
    for pair in pairs[VAL_SPLIT]:
        image, gt = pair.load()
        segmenter.set_image(image)
        masks.append(segmenter.predict((0, 0, gt.shape[1], gt.shape[0])).mask)
    write_s, _ = _core_seconds(lambda: [store.put(f"{k:032x}", (0, 0, 1, 1), m) for k, m in enumerate(masks)])
    write_s /= len(masks)
    embeds, per_box = [], []  # the main thread's share, per image and per box, from the stand-in's own clock
    for pair in pairs[VAL_SPLIT]:
        image, gt = pair.load()
        start = time.thread_time()
        segmenter.set_image(image)
        embeds.append(time.thread_time() - start)
        start = time.thread_time()
        segmenter.predict((0, 0, gt.shape[1], gt.shape[0]))
        per_box.append(time.thread_time() - start)
    embed_s, mask_s = float(np.mean(embeds)), float(np.mean(per_box))
    lookup_s = max(0.0, (clock.seconds - serial - boxes * write_s) / images)
    return {"stage1_embed_cpu_s": embed_s, "stage1_mask_cpu_s": mask_s, "stage1_lookup_core_s": lookup_s,
            "stage1_write_core_s": write_s, "stage1_boxes_per_image": boxes / images,
            "stage1_pass_core_s_per_image": clock.seconds / images}, segmenter


def per_image_and_sample(whole_s: float, enriched_s: float, images: int, samples: int) -> tuple[float, float]:
    """(seconds per image, seconds per sample) from two builds of one split: one sample per image
    (``whole_s``) and ``samples`` enriched samples (``enriched_s``); all per image when the two counts agree."""
    if samples <= images:
        return whole_s / images, 0.0
    per_sample = max(0.0, (enriched_s - whole_s) / (samples - images))
    return max(0.0, whole_s / images - per_sample), per_sample


def _datasets(data: Path, cache: Path, resized: Path, key: str, spec: RateSpec) -> tuple[dict[str, float], Any, Any]:
    """The resized caches of DIS-TR with and without the mask channel, whole and enriched, each built in a
    folder of its own (so each writes its RGB arrays) with one thread; then DIS-VD's (for the reads)."""
    def build(split: str, folder: str, **kw) -> tuple[float, RefinerDataset]:
        coarse = CachedCoarse(cache / split, key) if kw.get("use_mask", True) else None
        return _core_seconds(lambda: RefinerDataset(data / split, coarse, spec.size, cache_dir=resized / folder,
                                                    workers=1, **kw))

    rates: dict[str, float] = {}
    plain = dict(use_box=False, use_mask=False, in_ch=3)
    for name, inputs in (("mask", {}), ("plain", plain)):
        whole_s, _ = build(TRAIN_SPLIT, f"{name}-whole", enrichment=None, augment="hflip", **inputs)
        enriched_s, train = build(TRAIN_SPLIT, f"{name}-enriched", enrichment="filtered", augment="hflip", **inputs)
        per_image, per_sample = per_image_and_sample(whole_s, enriched_s, spec.n_train, len(train))
        rates[f"resized_cache_{name}_image_core_s"] = per_image
        rates[f"resized_cache_{name}_sample_core_s"] = per_sample
        if name == "mask":
            main_train = train
    rates["train_samples_per_image"] = len(main_train) / spec.n_train
    _, val = build(VAL_SPLIT, "val", enrichment=None, augment=None)
    return rates, main_train, val


def _loader(train, spec: RateSpec) -> float:
    """Core-seconds per sample of a DataLoader worker: TrainingItems items and their collate share."""
    import torch
    from torch.utils.data import default_collate


    items = TrainingItems(train)
    generator = torch.Generator().manual_seed(spec.seed)
    keys = []
    while len(keys) < spec.loader_batches * spec.batch_size:
        order = torch.randperm(len(items), generator=generator).tolist()
        keys += [(i, *f) for i, f in zip(order, draw_flips(train.augment, len(order), generator))]
    batches = [keys[b * spec.batch_size:(b + 1) * spec.batch_size] for b in range(spec.loader_batches)]
    seconds, _ = _core_seconds(lambda: [default_collate([items[k] for k in batch]) for batch in batches])
    return seconds / (spec.loader_batches * spec.batch_size)


def _predictions(val, cache: Path, key: str, out: Path) -> dict[str, float]:
    """Per image on the main process: the prediction data set read as dissam.repro.runs reads it, a map upsampled
    to the image size and written, read back with its GT, and a stage-1 prediction from the cache."""
    from torch.utils.data import DataLoader


    pairs = val.pairs
    read_s, batches = _core_seconds(lambda: list(DataLoader(val, batch_size=16, shuffle=False)))
    maps = [b["gt"][i, 0].numpy() for b in batches for i in range(len(b["gt"]))]
    sizes = [read_mask(p.gt_path).shape for p in pairs]
    write_s, _ = _core_seconds(lambda: [save_prediction(to_original(m, *hw, minmax=True), out / "refined" / f"{p.stem}.png")
                                        for m, hw, p in zip(maps, sizes, pairs)])
    back_s, _ = _core_seconds(lambda: [(read_prediction(out / "refined" / f"{p.stem}.png"), read_mask(p.gt_path))
                                       for p in pairs])
    source = CachedCoarse(cache / VAL_SPLIT, key)

    def stage1_prediction(pair) -> None:
        image, gt = pair.load()
        save_prediction(source(pair.stem, image, whole_mask(gt)[0].box), out / "stage1" / f"{pair.stem}.png")

    stage1_s, _ = _core_seconds(lambda: [stage1_prediction(p) for p in pairs])
    n = len(pairs)
    return {"prediction_read_cpu_s": read_s / n, "prediction_write_cpu_s": write_s / n,
            "eval_read_core_s": back_s / n, "stage1_prediction_cpu_s": stage1_s / n}


def _evaluation(spec: RateSpec) -> dict[str, float]:
    w, h = spec.image_wh
    fresh = seconds_per_image(h, w, images=spec.eval_images, workers=1, clock=time.process_time)
    cached = seconds_per_image(h, w, images=spec.eval_images, workers=1, cached_skeletons=True,
                               clock=time.process_time)
    return {"eval_fresh_core_s": fresh, "eval_cached_core_s": cached}


def flop_ratios(size: int = 64) -> dict[str, float]:
    """FLOPs of a GT-encoder training step and of a refiner forward, each over a refiner training step
    (forward and backward, plus the frozen GT encoder's forward), full-width models at ``size`` px."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode


    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        refiner, encoder = build_refiner(5, 1.0), build_gt_encoder(1.0)
        x, gt = torch.rand(2, 5, size, size), torch.rand(2, 1, size, size)

    def flops(step: Callable[[], None]) -> int:
        with FlopCounterMode(display=False) as counter:
            step()
        return counter.get_total_flops()

    def refiner_step() -> None:
        maps, _ = refiner(x)
        with torch.no_grad():
            encoder(gt)
        sum(m.mean() for m in maps).backward()

    def encoder_step() -> None:
        maps, _ = encoder(gt)
        sum(m.mean() for m in maps).backward()

    def refiner_forward() -> None:
        with torch.no_grad():
            refiner(x)

    step = flops(refiner_step)
    return {"gt_encoder_step_ratio": flops(encoder_step) / step, "forward_ratio": flops(refiner_forward) / step}


def measure_rates(out: str | Path | None = None, spec: RateSpec = RateSpec(),
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Render ``spec``'s scenes under ``out`` (emptied first: cached work would time nothing; default a
    temporary folder, removed after) and measure every rate above; returns them (seconds per image, box or
    sample; ``*_core_s`` spread over cores, ``*_cpu_s`` run on one thread of the main process) with the
    spec, threads and seconds it took."""
    say = log or (lambda line: None)
    start = time.perf_counter()
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch, one_thread() as threads:
        root = Path(out) if out is not None else Path(scratch)
        data, cache = root / "data", root / "coarse_cache"
        _render(data, spec)
        say(f"[rates] rendered {spec.n_train} + {spec.n_val} scenes at {spec.image_wh[0]}x{spec.image_wh[1]} "
            f"({time.perf_counter() - start:.0f} s)")
        pairs = {s: list_pairs(data / s) for s in (TRAIN_SPLIT, VAL_SPLIT)}
        rates, segmenter = _stage1(data, cache, pairs)
        built, train, val = _datasets(data, cache, root / "resized_cache", segmenter.key, spec)
        rates.update(built)
        rates["loader_sample_core_s"] = _loader(train, spec)
        rates.update(_predictions(val, cache, segmenter.key, root / "predictions"))
        say(f"[rates] stage 1, resized caches, loader and predictions measured ({time.perf_counter() - start:.0f} s)")
        gt_s, _ = _core_seconds(lambda: _gt_summary(data))
        rates["gt_summary_cpu_s"] = gt_s / spec.n_train
        rates.update(_evaluation(spec))
        rates.update(flop_ratios())
        say(f"[rates] evaluation and FLOP ratios measured ({time.perf_counter() - start:.0f} s)")
    return {**{k: float(v) for k, v in rates.items()}, "spec": asdict(spec), "threads": threads,
            "clock": "process CPU time (core-seconds, all threads)", "seconds": time.perf_counter() - start}


def _gt_summary(data: Path) -> None:
    enrichment_summary(data, TRAIN_SPLIT, "filtered")
