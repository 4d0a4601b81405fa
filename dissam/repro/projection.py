"""The paper profile's wall-clock on one GPU node, notebook by notebook: a stage model in plain arithmetic.

:func:`paper_plan` lists the work notebooks 00-06 do on the paper profile, in order, with the budgets
the code has (``dissam.repro.config.get_profile("paper")``, :mod:`dissam.repro.runs`: iteration counts, validation
intervals, which runs each notebook trains, which methods each table evaluates on which splits, which
resized caches each run and evaluation builds first) and DIS5K's split sizes. :func:`stages` prices
each piece of work with measured per-core CPU rates (:mod:`dissam.repro.rates`) and the stated GPU
assumptions (:class:`Assumptions`); :func:`project` adds them up on a :class:`Node`.

Each :class:`Stage` has GPU seconds, main-process CPU seconds (``serial_s``: one thread, they do not
scale with cores; Amdahl's serial part) and CPU core-seconds that spread over ``threads`` (the threads or
processes the code uses for them, at most the node's cores; linear in cores, no better). Its wall-clock
is ``max(gpu_s + serial_s, parallel_core_s / width)`` when the parallel part runs while the GPU works
(``overlapped``: DataLoader workers during training and validation, stage 1's read-ahead and writer
threads), else ``gpu_s + serial_s + parallel_core_s / width``. Training is the first case per batch:
``max(gpu_step, batch * loader_core_s / workers)``. The GPU-busy share is total GPU seconds over total
wall-clock. Nothing here imports torch: the plan reads :mod:`dissam.repro.runs` (which does) only in
:func:`paper_plan`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..coarse.cache import READ_AHEAD
from ..data.splits import TEST_SPLITS, TRAIN_SPLIT, VAL_SPLIT
from . import runs
from .config import BaselineConfig, get_profile

# DIS5K's split sizes (Qin et al., ECCV 2022) and the zero-shot sets' test images; DIS-TR has 3,880
# samples after the authors' enrichment (the paper's count, dissam.repro.config.Variant.enrichment).
SPLIT_IMAGES = {"DIS-TR": 3000, "DIS-VD": 470, "DIS-TE1": 500, "DIS-TE2": 500, "DIS-TE3": 500, "DIS-TE4": 500,
                "COIFT": 280, "HRSOD": 400, "ThinObject5K-TE": 500}
ENRICHED_TRAIN_SAMPLES = 3880
STAGE1_WRITER_THREADS = 2  # dissam.coarse.cache._segment_serial's mask writers
NOTEBOOKS = ("00_data_enrichment", "01_sam_caching", "02_training", "03_evaluation", "04_ablations",
             "05_zero_shot", "06_figures")


@dataclass(frozen=True)
class Node:
    """The machine projected to: one GPU, ``cores`` CPU cores, ``memory_gib`` of memory."""

    cores: int = 16
    memory_gib: float = 128.0
    gpu: str = "one NVIDIA H200"


@dataclass(frozen=True)
class Assumptions:
    """GPU times this projection does not measure (a CPU-only machine cannot), and how the loader runs."""

    gpu_step_s: float = 0.15  # one IS-Net refiner step: 1024^2, batch 6, fp32/TF32, forward + backward + Adam
    sam_encoder_s: float = 0.05  # SAM ViT-B image encoder, one 1024^2 image, on the GPU
    sam_decoder_s: float = 0.005  # per box: prompt encoder, mask decoder, logits upsampled to the image size
    loader_workers: int | None = None  # None: the profile's num_workers, at most cores - 2
    figure_images: int = 40  # images the figures of notebooks 00-06 put through stage 1 and the refiner

    def described(self, step_measured: bool = False) -> dict[str, dict[str, Any]]:
        """Each assumption with its value and what it stands for (for the JSON report)."""
        step = ("measured by the GPU check (resumed phase, steady iterations)" if step_measured else
                "assumed: IS-Net at 1024^2, batch 6, fp32/TF32 on one H200 takes 0.10-0.20 s a step")
        return {
            "gpu_step_s": {"value": self.gpu_step_s, "what": f"refiner training step (s); {step}"},
            "sam_encoder_s": {"value": self.sam_encoder_s,
                              "what": "SAM ViT-B image-encoder forward per image on the GPU (s), assumed"},
            "sam_decoder_s": {"value": self.sam_decoder_s,
                              "what": "SAM prompt encoder + mask decoder + upsampling per box on the GPU (s), assumed"},
            "loader_workers": {"value": self.loader_workers,
                               "what": "training/validation DataLoader workers (None: the profile's num_workers, "
                                       "at most cores - 2)"},
            "figure_images": {"value": self.figure_images,
                              "what": "images the notebooks' figures run through stage 1 and the refiner, assumed"},
            "gpu_other": {"value": None,
                          "what": "GT-encoder step = gpu_step_s x its FLOPs over the refiner step's; a forward per "
                                  "image (validation, prediction) = gpu_step_s / batch x forward FLOPs over step "
                                  "FLOPs (both ratios measured by torch's FLOP counter)"},
            "images": {"value": dict(SPLIT_IMAGES),
                       "what": "images per split (DIS5K and the zero-shot sets' test images); each costs a DIS5K-"
                               "size image (7.5 MP), an over-estimate for the smaller COIFT and ThinObject5K images"},
            "enriched_train_samples": {"value": ENRICHED_TRAIN_SAMPLES,
                                       "what": "DIS-TR samples after GT enrichment (the paper's count)"},
            "early_stop": {"value": None,
                           "what": "the GT encoder trains its full iteration cap (it may stop earlier at maxF 0.99)"},
            "not_counted": {"value": None,
                            "what": "checkpoint writes at each validation (weights and Adam state), notebook kernel "
                                    "and DataLoader worker starts, pinned-memory copies, the pilot (not a notebook)"},
            "cpu_scaling": {"value": "linear",
                            "what": "measured core-seconds divided by the threads the code uses, at most the "
                                    "node's cores; main-process work does not scale"},
        }


@dataclass(frozen=True)
class Work:
    """One piece of a notebook's work, in counts (no seconds): what :func:`paper_plan` lists."""

    notebook: str
    kind: str  # gt_summary | stage1 | resized_set | train | validate | stage1_predict | predict | evaluate | figures
    label: str
    split: str = ""
    images: int = 0
    samples: int = 0
    boxes: int = 0
    iterations: int = 0
    batch: int = 0
    mask: bool = False  # resized_set: with the stage-1 mask channel
    fresh: bool = False  # evaluate: the split's GT skeletons are computed (the first method on it)
    gt_encoder: bool = False  # train / validate: the GT encoder, not the refiner
    from_files: bool = False  # train: items made from the original files per item (no resized cache)


@dataclass(frozen=True)
class Stage:
    """One priced piece of work. Seconds on the node: ``gpu_s`` on the GPU, ``serial_s`` on one thread of the
    main process, ``parallel_core_s`` spread over ``threads`` (None: every core) and, when ``overlapped``,
    while the GPU works."""

    notebook: str
    name: str
    gpu_s: float = 0.0
    serial_s: float = 0.0
    parallel_core_s: float = 0.0
    threads: int | None = None
    overlapped: bool = False

    def width(self, cores: int) -> int:
        return max(1, min(cores, self.threads or cores))

    def wall(self, cores: int) -> float:
        spread = self.parallel_core_s / self.width(cores)
        if self.overlapped:
            return max(self.gpu_s + self.serial_s, spread)
        return self.gpu_s + self.serial_s + spread

    def row(self, cores: int) -> dict[str, Any]:
        wall = self.wall(cores)
        spread = self.parallel_core_s / self.width(cores)
        return {**asdict(self), "hours": wall / 3600, "gpu_hours": self.gpu_s / 3600,
                "gpu_busy_share": self.gpu_s / wall if wall > 0 else 0.0,
                "bound": "gpu" if self.gpu_s >= max(self.serial_s, spread) else
                         ("main process" if self.serial_s >= spread else "cpu threads")}


# ----------------------------------------------------------------------------- totals
def totals(stages: Iterable[Stage], cores: int) -> dict[str, float]:
    """Wall-clock hours, GPU hours and the GPU-busy share of ``stages`` run one after another."""
    stages = list(stages)
    wall = sum(s.wall(cores) for s in stages)
    gpu = sum(s.gpu_s for s in stages)
    return {"hours": wall / 3600, "gpu_hours": gpu / 3600, "gpu_busy_share": gpu / wall if wall > 0 else 0.0}


def by_notebook(stages: Iterable[Stage], cores: int) -> list[dict[str, Any]]:
    """One row per notebook (in series order): hours, GPU hours, GPU-busy share, its longest stage."""
    stages = list(stages)
    rows = []
    for notebook in dict.fromkeys([*NOTEBOOKS, *(s.notebook for s in stages)]):
        mine = [s for s in stages if s.notebook == notebook]
        if not mine:
            continue
        longest = max(mine, key=lambda s: s.wall(cores))
        rows.append({"notebook": notebook, **totals(mine, cores), "longest_stage": longest.name})
    return rows


# ----------------------------------------------------------------------------- pricing
def loader_workers(num_workers: int, cores: int, assumed: int | None = None) -> int:
    """DataLoader workers on the node: the assumed count, else the profile's, at most ``cores - 2`` (the
    training process and the GPU feed keep two), at least 1 (0 workers load in the main process)."""
    return max(1, min(assumed if assumed is not None else num_workers, cores - 2))


def price(work: Work, rates: Mapping[str, float], a: Assumptions, workers: int, stage1_threads: int) -> Stage:
    """The :class:`Stage` of one piece of work: its counts times the rates and GPU assumptions."""
    r, n = rates, work.images
    step = a.gpu_step_s * (r["gt_encoder_step_ratio"] if work.gt_encoder else 1.0)
    forward = step * r["forward_ratio"] / work.batch if work.batch else 0.0  # one image, forward only
    base = dict(notebook=work.notebook, name=work.label)
    if work.kind == "gt_summary":
        return Stage(**base, serial_s=n * r["gt_summary_cpu_s"])
    if work.kind == "stage1":
        return Stage(**base, gpu_s=n * a.sam_encoder_s + work.boxes * a.sam_decoder_s,
                     serial_s=n * r["stage1_embed_cpu_s"] + work.boxes * r["stage1_mask_cpu_s"],
                     parallel_core_s=n * r["stage1_lookup_core_s"] + work.boxes * r["stage1_write_core_s"],
                     threads=stage1_threads, overlapped=True)
    if work.kind == "resized_set":
        kind = "mask" if work.mask else "plain"
        core_s = n * r[f"resized_cache_{kind}_image_core_s"] + work.samples * r[f"resized_cache_{kind}_sample_core_s"]
        return Stage(**base, parallel_core_s=core_s)
    if work.kind == "train":
        per_sample = (r["resized_cache_mask_image_core_s"] + r["resized_cache_mask_sample_core_s"] if work.from_files
                      else r["loader_sample_core_s"])
        return Stage(**base, gpu_s=work.iterations * step, parallel_core_s=work.iterations * work.batch * per_sample,
                     threads=workers, overlapped=True)
    if work.kind == "validate":
        return Stage(**base, gpu_s=n * forward, parallel_core_s=n * r["loader_sample_core_s"], threads=workers,
                     overlapped=True)
    if work.kind == "stage1_predict":
        return Stage(**base, serial_s=n * r["stage1_prediction_cpu_s"])
    if work.kind == "predict":
        return Stage(**base, gpu_s=n * forward,
                     serial_s=n * (r["prediction_read_cpu_s"] + r["prediction_write_cpu_s"]))
    if work.kind == "evaluate":
        per_image = r["eval_fresh_core_s" if work.fresh else "eval_cached_core_s"] + r["eval_read_core_s"]
        return Stage(**base, parallel_core_s=n * per_image)
    if work.kind == "figures":
        return Stage(**base, gpu_s=n * (a.sam_encoder_s + a.sam_decoder_s + forward),
                     serial_s=n * (r["stage1_embed_cpu_s"] + r["stage1_mask_cpu_s"] + r["stage1_lookup_core_s"]
                                   + r["prediction_read_cpu_s"] + r["prediction_write_cpu_s"]))
    raise ValueError(f"unknown work kind {work.kind!r}")


def stages(plan: Iterable[Work], rates: Mapping[str, float], assumptions: Assumptions, node: Node,
           num_workers: int, stage1_threads: int = 4 + STAGE1_WRITER_THREADS) -> list[Stage]:
    workers = loader_workers(num_workers, node.cores, assumptions.loader_workers)
    return [price(w, rates, assumptions, workers, stage1_threads) for w in plan]


# ----------------------------------------------------------------------------- the paper profile's work
@dataclass
class _Walk:
    """The notebooks' work in order, remembering what an earlier step already built, predicted or measured."""

    profile: Any
    images: dict[str, int]
    works: list[Work] = field(default_factory=list)
    built: set = field(default_factory=set)  # resized sets: (split, enrichment, mask, box)
    trained: set = field(default_factory=set)
    predicted: set = field(default_factory=set)
    skeletons: set = field(default_factory=set)  # splits whose GT skeletons are on disk

    def add(self, notebook: str, kind: str, label: str, **counts: Any) -> None:
        self.works.append(Work(notebook, kind, label, **counts))

    def inputs_of(self, method: str) -> tuple[bool, bool] | None:
        """(mask, box) of a refiner method; None for stage-1 methods."""
        if method in (runs.STAGE1, runs.HQ_SAM):
            return None
        if method == runs.ISNET_OFFICIAL:
            return (False, False)
        ablation = {a.name: a for a in runs.ABLATIONS}.get(method.split("_seed")[0])
        return (ablation.use_mask, ablation.use_box) if ablation is not None else (True, True)  # main, DIS-SAM†

    def train_run(self, notebook: str, name: str) -> None:
        """The training of the experiment list's run ``name`` (as the profile names it) in ``notebook``."""
        profile, cfg = self.profile, self.profile.train
        run = runs.run_name(profile, name)
        if run == runs.MAIN:
            self.train(notebook, runs.MAIN, cfg.max_iters, cfg.batch_size, cfg.val_every, True, True, True)
        elif run == runs.HQSEG_RUN:  # HQSeg-44K is read per item (no resized cache); priced as DIS-TR
            self.train(notebook, run, runs.hqseg_spec(profile).horizon(profile), cfg.batch_size, cfg.val_every,
                       True, True, True, train_split="HQSeg-44K")
        else:
            ablation = {a.name: a for a in runs.ABLATIONS}[run.split("_seed")[0]]
            iterations, batch = runs.ablation_budget(profile)
            self.train(notebook, run, iterations, batch, cfg.val_every, ablation.enrich, ablation.use_mask,
                       ablation.use_box)

    def evaluate_methods(self, notebook: str, methods: list[str], splits: list[str]) -> None:
        """Each method's predictions and metrics on each split (HQ-SAM predicts live, as stage 1 did)."""
        for method in methods:
            if method == runs.HQ_SAM:
                for split in splits:
                    if (method, split) not in self.predicted:
                        self.add(notebook, "stage1", f"HQ-SAM {split}", split=split, images=self.images[split],
                                 boxes=self.images[split])
            for split in splits:
                self.evaluate(notebook, method, split, self.inputs_of(method))

    def resized_set(self, notebook: str, split: str, enrichment: str | None, mask: bool, box: bool) -> None:
        key = (split, enrichment, mask, box)
        if key in self.built:
            return
        self.built.add(key)
        n = self.images[split]
        samples = ENRICHED_TRAIN_SAMPLES if enrichment and split == "DIS-TR" else n
        inputs = "+".join([c for c, on in (("mask", mask), ("box", box)) if on]) or "rgb"
        self.add(notebook, "resized_set", f"resized cache {split} ({inputs}{', enriched' if enrichment else ''})",
                 split=split, images=n, samples=samples, mask=mask)

    def train(self, notebook: str, run: str, iterations: int, batch: int, val_every: int, enrich: bool,
              mask: bool, box: bool, gt_encoder: bool = False, train_split: str = "DIS-TR") -> None:
        if run in self.trained:
            return
        self.trained.add(run)
        enrichment = self.profile.variant.enrichment if enrich else None
        if train_split == "DIS-TR":
            self.resized_set(notebook, "DIS-TR", enrichment, mask, box)
        self.resized_set(notebook, "DIS-VD", None, mask, box)
        self.add(notebook, "train", f"train {run} ({iterations:,} it)", split=train_split, iterations=iterations,
                 batch=batch, gt_encoder=gt_encoder, from_files=train_split != "DIS-TR")
        validations = math.ceil(iterations / val_every)
        self.add(notebook, "validate", f"validate {run} ({validations} x DIS-VD)", split="DIS-VD",
                 images=validations * self.images["DIS-VD"], batch=batch, gt_encoder=gt_encoder)

    def evaluate(self, notebook: str, method: str, split: str, inputs: tuple[bool, bool] | None) -> None:
        """``inputs``: the refiner's (mask, box) channels; None for a stage-1 method (cached masks)."""
        n, batch = self.images[split], self.profile.train.batch_size
        if (method, split) not in self.predicted:
            self.predicted.add((method, split))
            if inputs is None:
                self.add(notebook, "stage1_predict", f"predict {method} {split}", split=split, images=n)
            else:
                self.resized_set(notebook, split, None, *inputs)
                self.add(notebook, "predict", f"predict {method} {split}", split=split, images=n, batch=batch)
        self.add(notebook, "evaluate", f"evaluate {method} {split}", split=split, images=n,
                 fresh=split not in self.skeletons)
        self.skeletons.add(split)


def paper_profile(profile=None):
    """The paper profile as its real run has it: ``isnet.pth`` given (``refiner_init="isnet"`` needs it)."""
    profile = profile or get_profile("paper")
    if profile.variant.refiner_init == "isnet" and profile.baselines.isnet_checkpoint is None:
        profile = replace(profile, baselines=BaselineConfig(Path("isnet.pth"), profile.baselines.hq_sam_checkpoint))
    return profile


def paper_plan(profile=None, images: Mapping[str, int] | None = None, figure_images: int = 40) -> list[Work]:
    """The work of notebooks 00-06 on ``profile`` (default: the paper profile with ``isnet.pth`` given) in
    order: budgets from the profile and :mod:`dissam.repro.runs`, images per split from ``images`` (default
    :data:`SPLIT_IMAGES`; zero-shot sets without a count are left out, as a data root without them).
    DIS-SAM† (HQSeg-44K given) is priced for its training and validation only: its images are read per
    item from the files, and its stage-1 pass is not counted."""
    profile = paper_profile(profile)
    images = dict(SPLIT_IMAGES if images is None else images)
    cfg, walk = profile.train, _Walk(profile, images)
    zero_shot = [s for s in profile.data.zero_shot_sets if s in images]
    hq_sam, hqseg = profile.baselines.hq_sam_checkpoint is not None, bool(runs.hqseg_runs(profile))
    train_run, evaluate = walk.train_run, walk.evaluate_methods

    # 00: the data summary reads every training GT once per enrichment rule.
    walk.add("00_data_enrichment", "gt_summary", "enrichment summary DIS-TR (2 rules)", split=TRAIN_SPLIT,
             images=2 * images[TRAIN_SPLIT])
    # 01: stage 1 over every split (DIS-TR: whole and enriched boxes, each image embedded once), then SAM on DIS-VD.
    for split in [TRAIN_SPLIT, VAL_SPLIT, *TEST_SPLITS, *zero_shot]:
        boxes = ENRICHED_TRAIN_SAMPLES if split == TRAIN_SPLIT else images[split]
        walk.add("01_sam_caching", "stage1", f"stage 1 {split}", split=split, images=images[split], boxes=boxes)
    evaluate("01_sam_caching", [runs.STAGE1], [VAL_SPLIT])
    # 02: the GT encoder (its own 3-channel sets), then the main run.
    walk.train("02_training", "gt_encoder", cfg.gt_encoder_iters, cfg.batch_size, cfg.gt_encoder_val_every or cfg.val_every,
               cfg.enrich, False, False, gt_encoder=True)
    train_run("02_training", runs.MAIN)
    # 03: the runs notebook 03 trains, then Table I.
    for name in [runs.ISNET_RUN, runs.DISSAM_SHORT_RUN, *runs.hqseg_runs(profile)]:
        train_run("03_evaluation", name)
    isnet = runs.ISNET_OFFICIAL if profile.baselines.isnet_checkpoint is not None else runs.ISNET_RUN
    short = [runs.DISSAM_SHORT_RUN] if runs.run_name(profile, runs.DISSAM_SHORT_RUN) != runs.MAIN else []
    table_one = [runs.STAGE1, *([runs.HQ_SAM] if hq_sam else []), isnet, *short, runs.MAIN,
                 *([runs.HQSEG_RUN] if hqseg else [])]
    evaluate("03_evaluation", table_one, [VAL_SPLIT, *TEST_SPLITS])
    # 04: Table III's runs, then each distinct row evaluated on DIS-VD.
    for name in runs.table_three_runs(profile):
        train_run("04_ablations", name)
    rows = dict.fromkeys(runs.ablation_row(profile, a, seed)[1] for seed in profile.ablation.seeds for a in runs.ABLATIONS)
    evaluate("04_ablations", list(rows), [VAL_SPLIT])
    # 05: Table II on the zero-shot sets (their stage-1 masks were cached by 01; ALL pools stored results).
    table_two = [runs.STAGE1, *([runs.HQ_SAM] if hq_sam else []), isnet, runs.MAIN, *([runs.HQSEG_RUN] if hqseg else [])]
    evaluate("05_zero_shot", table_two, zero_shot)
    # 06: figures (and the other notebooks' walkthroughs): a few images through stage 1 and the refiner.
    return walk.works + [Work("06_figures", "figures", "figures", images=figure_images, batch=cfg.batch_size)]


def unused_runs(profile=None) -> list[str]:
    """Runs the notebooks train that no table reads: Table I/II/III's IS-Net row is the published model
    when ``isnet.pth`` is given, yet notebook 03 trains the RGB-only stand-in all the same."""
    profile = paper_profile(profile)
    if profile.baselines.isnet_checkpoint is not None and runs.run_name(profile, runs.ISNET_RUN) != runs.MAIN:
        return [runs.ISNET_RUN]
    return []


# ----------------------------------------------------------------------------- the report
def resized_cache_gib(plan: Iterable[Work], size: int) -> float:
    """GiB of every resized set the plan builds: RGB once per split (3 planes), up to 3 planes per sample."""
    plane = size * size / 2**30
    splits, total = {}, 0.0
    for w in plan:
        if w.kind == "resized_set":
            splits[w.split] = w.images
            total += w.samples * (3 if w.mask else 1) * plane
    return total + sum(3 * n * plane for n in splits.values())


def project(rates: Mapping[str, float], assumptions: Assumptions = Assumptions(), node: Node = Node(),
            profile=None, images: Mapping[str, int] | None = None, step_measured: bool = False) -> dict[str, Any]:
    """The projection report: ``projected_hours`` and ``gpu_busy_share`` of the whole profile, one row per
    notebook and per stage, the hours at the ends of the step-time range, what it assumed and counted."""
    profile = paper_profile(profile)
    plan = paper_plan(profile, images, assumptions.figure_images)
    num_workers, threads = profile.train.num_workers, READ_AHEAD + STAGE1_WRITER_THREADS

    def priced_at(a: Assumptions) -> list[Stage]:
        return stages(plan, rates, a, node, num_workers, threads)

    priced = priced_at(assumptions)
    total = totals(priced, node.cores)
    by_step = {f"{s:.2f}": totals(priced_at(replace(assumptions, gpu_step_s=s)), node.cores) for s in (0.10, 0.15, 0.20)}
    unused = unused_runs(profile)
    notes = [f"{run} is trained by notebook 03 ({_hours_of(priced, run, node.cores):.2f} h with its caches and "
             "validation) although no table reads it: the IS-Net rows are the published isnet.pth"
             for run in unused]
    gib = resized_cache_gib(plan, profile.train.size)
    if gib > 0.75 * node.memory_gib:
        notes.append(f"the resized caches take {gib:.0f} GiB, more than the page cache holds: the loader rate "
                     "measured here (from memory) is optimistic")
    return {
        "projected_hours": total["hours"], "gpu_busy_share": total["gpu_busy_share"], "gpu_hours": total["gpu_hours"],
        "node": asdict(node), "loader_workers": loader_workers(num_workers, node.cores, assumptions.loader_workers),
        "notebooks": by_notebook(priced, node.cores),
        "stages": [s.row(node.cores) for s in priced],
        "by_gpu_step_s": by_step, "resized_cache_gib": gib, "notes": notes,
        "assumptions": assumptions.described(step_measured),
        "plan": {"profile": profile.name, "train_iterations": profile.train.max_iters,
                 "ablation_iterations": profile.ablation.max_iters, "gt_encoder_iterations": profile.train.gt_encoder_iters,
                 "val_every": profile.train.val_every, "batch_size": profile.train.batch_size,
                 "num_workers": num_workers, "seeds": list(profile.ablation.seeds),
                 "isnet_checkpoint_given": profile.baselines.isnet_checkpoint is not None,
                 "hq_sam": profile.baselines.hq_sam_checkpoint is not None,
                 "hqseg": profile.data.hqseg_root is not None,
                 "images": dict(SPLIT_IMAGES if images is None else images),
                 "trained": [w.label for w in plan if w.kind == "train"]},
        "rates": dict(rates),
    }


def _hours_of(priced: list[Stage], run: str, cores: int) -> float:
    mine = [s for s in priced if s.name.startswith((f"train {run} ", f"validate {run} "))]
    return sum(s.wall(cores) for s in mine) / 3600


def table(report: Mapping[str, Any]) -> str:
    """The projection as text: one line per notebook, the total, and the step-time range."""
    lines = [f"{'notebook':<20} {'hours':>7} {'GPU h':>7} {'GPU busy':>9}  longest stage"]
    for row in report["notebooks"]:
        lines.append(f"{row['notebook']:<20} {row['hours']:7.2f} {row['gpu_hours']:7.2f} "
                     f"{row['gpu_busy_share']:9.0%}  {row['longest_stage']}")
    lines.append(f"{'paper profile':<20} {report['projected_hours']:7.2f} {report['gpu_hours']:7.2f} "
                 f"{report['gpu_busy_share']:9.0%}")
    node = report["node"]
    step = report["assumptions"]["gpu_step_s"]["value"]
    lines.append(f"node: {node['gpu']}, {node['cores']} CPU cores, {node['memory_gib']:g} GiB; GPU step "
                 f"{step:.3f} s; {report['loader_workers']} loader workers")
    lines.append("at a GPU step of " + ", ".join(f"{s} s: {v['hours']:.1f} h ({v['gpu_busy_share']:.0%} busy)"
                                                  for s, v in report["by_gpu_step_s"].items()))
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)
