"""The paper's experiment list on a profile (which runs make which table rows) and their predictions.

Table I rows: stage 1 alone, IS-Net, DIS-SAM (and HQ-SAM when its checkpoint is given). Table III: the
five input/enrichment configurations, trained on the ablation budget; the box+mask+enrichment row on the
main budget is the main run itself. The IS-Net row is the published ``isnet.pth`` when it is given (the
check that our evaluation matches the paper's: DIS-VD maxF 0.791, HCE 1116); without it, Table III's
no-box/no-mask run stands in and is labelled for what it is, an RGB-only IS-Net trained with our recipe.
Table II evaluates the same models on the zero-shot sets. Predictions (stage 1's and the refiners') are
cached under ``runs/<profile>/predictions/<method>/<split>/``, saved as IS-Net's Inference.py saves them
and read back by the one reader evaluation uses. Evaluating them is :mod:`dissam.repro.evaluate`'s job.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import numerics
from ..cpuinfo import cpu_model
from ..data.datasets import RefinerDataset
from ..data.enrichment import whole_mask
from ..data.folders import list_pairs
from ..data.hqseg import HQSEG_SPLIT, list_hqseg_pairs
from ..data.images import read_mask
from ..data.splits import VAL_SPLIT
from ..data.transforms import to_original
from ..evaluation import read_prediction, save_prediction
from ..model.checkpoint import load_checkpoint, load_refiner
from ..model.inference import optimize_for_inference, predict_prob
from ..model.published import published_checkpoint_path
from . import stages
from .config import Profile, prediction_dir, split_dir
from .train import RunSpec, run_finished, train_refiner

STAGE1 = "stage1"  # the profile's stage 1 (SAM on the paper profile)
HQ_SAM = "hq-sam"  # HQ-SAM as a stage-1 baseline, when its checkpoint is given
ISNET_OFFICIAL = "isnet-official"  # the published 3-channel IS-Net, when its checkpoint is given
MAIN = "main"
ISNET_INPUT_SIZE = 1024  # the published IS-Net's input size (its Inference.py)
ISNET_GENERAL = "isnet-general"  # the published general-use IS-Net, zero-shot; its method is "<this>-<input px>"


@dataclass(frozen=True)
class Ablation:
    """One row of Table III."""

    name: str
    label: str
    enrich: bool
    use_box: bool
    use_mask: bool

    def run(self, seed: int = 0) -> str:
        """The run name of this row's training with ``seed`` (seed 0 keeps the plain name)."""
        return self.name if seed == 0 else f"{self.name}_seed{seed}"

    def spec(self, profile: Profile, seed: int = 0) -> RunSpec:
        return RunSpec(name=self.run(seed), use_box=self.use_box, use_mask=self.use_mask, enrich=self.enrich,
                       max_iters=ablation_budget(profile)[0])


ABLATIONS = (
    Ablation("ablation_none", "no box, no mask (IS-Net)", enrich=False, use_box=False, use_mask=False),
    Ablation("ablation_box", "box only", enrich=False, use_box=True, use_mask=False),
    Ablation("ablation_mask", "mask only", enrich=False, use_box=False, use_mask=True),
    Ablation("ablation_box_mask", "box + mask", enrich=False, use_box=True, use_mask=True),
    Ablation("ablation_box_mask_enrich", "box + mask + enrichment", enrich=True, use_box=True, use_mask=True),
)
ISNET_RUN = "ablation_none"
DISSAM_SHORT_RUN = "ablation_box_mask_enrich"
HQSEG_RUN = "dissam_hqseg"  # DIS-SAM†: the main recipe trained on HQSeg-44K (dissam.data.hqseg)
HQSEG_BUDGET_FACTOR = 2  # the paper trains DIS-SAM† 2e5 iterations, twice its main model's 1e5


def ablation_row(profile: Profile, ablation: Ablation, seed: int = 0) -> tuple[str, str]:
    """(label, method) of a Table III row for ``seed``. The paper's row 1 is the original IS-Net (Table I's
    IS-Net row): with ``isnet.pth`` given, row 1 is that published model (one model, the same for every
    seed); without it, the RGB-only ablation run stands in and its label says so."""
    if ablation.name != ISNET_RUN:
        return ablation.label, ablation.run(seed)
    if profile.baselines.isnet_checkpoint is not None:
        return "no box, no mask (IS-Net, published isnet.pth)", ISNET_OFFICIAL
    return "no box, no mask (IS-Net architecture, RGB only, trained from scratch with our recipe)", ablation.run(seed)


def table_three_runs(profile: Profile) -> list[str]:
    """The runs Table III needs trained, every seed: row 1 is not trained when the published IS-Net is given."""
    return [method for seed in profile.ablation.seeds for a in ABLATIONS
            if (method := ablation_row(profile, a, seed)[1]) != ISNET_OFFICIAL]


def table_two_runs(profile: Profile) -> list[str]:
    """The trained runs Table II reads: IS-Net's stand-in (none when the published isnet.pth is given),
    the main run, and DIS-SAM† when HQSeg-44K is given (:func:`dissam_methods` lists it once trained)."""
    isnet = [] if profile.baselines.isnet_checkpoint is not None else [ISNET_RUN]
    return [*isnet, MAIN, *hqseg_runs(profile)]


def ablation_budget(profile: Profile) -> tuple[int, int]:
    """(iterations, batch size) of every Table III run: the main run's with ``ablation.main_budget``,
    else the ablation's own (its batch size defaulting to the main run's)."""
    if profile.ablation.main_budget:
        return profile.train.max_iters, profile.train.batch_size
    return profile.ablation.max_iters, profile.ablation.batch_size or profile.train.batch_size


def run_name(profile: Profile, run: str) -> str:
    """The run that holds ``run``'s model: the box+mask+enrichment ablation on the main run's budget and
    batch *is* the main run (same inputs, data and recipe), so it is reused, never trained twice."""
    if run == DISSAM_SHORT_RUN and ablation_budget(profile) == (profile.train.max_iters, profile.train.batch_size):
        return MAIN
    return run


def ablation_profile(profile: Profile, seed: int = 0) -> Profile:
    """The profile an ablation run trains with: the ablation's batch size and the profile's seed + ``seed``."""
    train = replace(profile.train, seed=profile.train.seed + seed, batch_size=ablation_budget(profile)[1])
    return replace(profile, train=train)


def stage1_label(profile: Profile) -> str:
    kind = profile.coarse.kind
    return {"sam": f"SAM ({profile.variant.sam_model_type})", "hq-sam": "HQ-SAM"}.get(kind, "GrabCut (stage 1)")


def general_isnet_weights(profile: Profile) -> Path | None:
    """The general-use IS-Net's weights: ``profile.baselines.general_isnet_checkpoint`` (which must exist),
    else the conversion ``dissam weights isnet`` keeps in the user cache, else None (no row for it)."""
    given = profile.baselines.general_isnet_checkpoint
    if given is not None:
        return _given(given, "general-use IS-Net")
    cached = published_checkpoint_path()
    return cached if cached.is_file() else None


def general_isnet_method(profile: Profile) -> str:
    """The general-use IS-Net's method name, with its input side (predictions at another side are others)."""
    return f"{ISNET_GENERAL}-{profile.baselines.general_isnet_size}"


def _published(run: str) -> int | None:
    """The input side of a published 3-channel IS-Net's method, None for our runs."""
    if run == ISNET_OFFICIAL:
        return ISNET_INPUT_SIZE
    if run.startswith(ISNET_GENERAL + "-"):
        return int(run.rsplit("-", 1)[1])
    return None


def checkpoint_of(profile: Profile, run: str) -> Path:
    if run == ISNET_OFFICIAL:
        return _given(profile.baselines.isnet_checkpoint, "IS-Net")
    if _published(run):
        return _given(general_isnet_weights(profile), "general-use IS-Net (`dissam weights isnet`)")
    return RunSpec(name=run_name(profile, run)).checkpoint(profile)


def _given(path: Path | None, what: str) -> Path:
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"{what} checkpoint {'not given' if path is None else f'not found: {path}'}")
    return Path(path)


def train_run(profile: Profile, run: str, progress: bool = True) -> Path:
    """Train (or reuse) one Table III run on the ablation budget, the main run, or DIS-SAM† (HQSEG_RUN);
    its best checkpoint."""
    name = run_name(profile, run)
    if name == MAIN:
        return train_refiner(profile, RunSpec(), progress=progress).checkpoint
    if name == HQSEG_RUN:
        return train_hqseg(profile, progress=progress)
    return train_refiner(*_run_and_spec(profile, name), progress=progress).checkpoint


def hqseg_runs(profile: Profile) -> list[str]:
    """[HQSEG_RUN] when HQSeg-44K is given (``profile.data.hqseg_root``), else []: DIS-SAM† is trained
    only on the day someone has the data; until then its rows are the paper's only."""
    return [HQSEG_RUN] if profile.data.hqseg_root is not None else []


def hqseg_spec(profile: Profile) -> RunSpec:
    """DIS-SAM†'s run: the main run's inputs on twice its budget (the paper: 2e5 against 1e5 iterations)."""
    return RunSpec(name=HQSEG_RUN, max_iters=HQSEG_BUDGET_FACTOR * profile.train.max_iters)


def train_hqseg(profile: Profile, progress: bool = True) -> Path:
    """Train (or resume) DIS-SAM† on HQSeg-44K, validated on DIS-VD like the main run; its best checkpoint.
    Stage-1 masks of HQSeg-44K are computed on first use and cached under its own name."""
    if profile.data.hqseg_root is None:
        raise FileNotFoundError("DIS-SAM† trains on HQSeg-44K: set profile.data.hqseg_root to its folder "
                                "(HQ-SAM's training data, layout in dissam.data.hqseg)")
    variant = profile.variant
    coarse = stages.coarse_source(profile, HQSEG_SPLIT, segmenter=stages.build_stage1(profile))
    train = RefinerDataset(list_hqseg_pairs(profile.data.hqseg_root), coarse, profile.train.size,
                           enrichment=variant.enrichment, augment=variant.augment if variant.augment != "none" else None,
                           preload=profile.name != "paper")
    datasets = (train, stages.refiner_dataset(profile, VAL_SPLIT))
    return train_refiner(profile, hqseg_spec(profile), progress=progress, datasets=datasets).checkpoint


def _ablation_of(run: str) -> tuple[Ablation, int]:
    """The row and seed of an ablation run name (the inverse of :meth:`Ablation.run`)."""
    for ablation in ABLATIONS:
        if run == ablation.name:
            return ablation, 0
        seed = run.removeprefix(f"{ablation.name}_seed")
        if seed != run and seed.isdigit():
            return ablation, int(seed)
    raise ValueError(f"unknown run {run!r}; the ablation runs are {', '.join(a.name for a in ABLATIONS)} "
                     "(and <name>_seed<k>)")


def train_ablations(profile: Profile, progress: bool = True) -> dict[str, Path]:
    """Train (or reuse) every Table III run on the ablation budget, once per seed of the profile (row 1 is
    the published IS-Net when given, and is not trained: :func:`table_three_runs`)."""
    return train_runs(profile, table_three_runs(profile), progress)


def train_runs(profile: Profile, names: Iterable[str], progress: bool = True) -> dict[str, Path]:
    """Train (or reuse) several runs; their best checkpoints by name.

    On the CPU the ablation runs still to train are dealt round-robin to ``profile.ablation.workers``
    processes (default: the CPU count, at most 8), each training its share one after another with one
    thread. The smoke ablations' batch-4 step takes as long on one thread as on two and two such
    processes do not slow each other (docs/benchmarks.md, "Training speed"), so two cores train two runs
    in the time of one; and since every run has one thread wherever it runs, its numbers do not depend
    on the number of workers. One worker (or one run) trains here, with one thread; the main run,
    finished runs and GPU profiles train here with the process's threads, one after another."""
    names = list(names)
    pooled = [n for n in names if profile.torch_device().type == "cpu" and run_name(profile, n) != MAIN
              and not run_finished(*_run_and_spec(profile, n))]
    paths = {n: train_run(profile, n, progress) for n in names if n not in pooled}
    if len(pooled) == 1 or profile.ablation.workers == 1:  # one at a time: here, with one thread
        paths.update(_train_one_thread(profile, pooled, progress))
    elif pooled:
        paths.update(_train_in_processes(profile, pooled, progress))
    return {n: paths[n] for n in names}


def _train_one_thread(profile: Profile, names: list[str], progress: bool) -> dict[str, Path]:
    """The runs one after another in this process, with one thread (the numbers a worker gives)."""
    numerics.apply(profile.numerics)  # first: in portable mode it pins the process's own thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: train_run(profile, name, progress) for name in names}
    finally:
        torch.set_num_threads(threads)


def _run_and_spec(profile: Profile, name: str) -> tuple[Profile, RunSpec]:
    """The profile and spec ``name`` trains with (an ablation's batch and seed; DIS-SAM†'s budget)."""
    if name == HQSEG_RUN:
        return profile, hqseg_spec(profile)
    ablation, seed = _ablation_of(name)
    return ablation_profile(profile, seed), ablation.spec(profile, seed)


def _train_in_processes(profile: Profile, names: list[str], progress: bool) -> dict[str, Path]:
    """``names`` dealt round-robin to fresh interpreters (``python -m dissam.repro.runs``, the profile and the
    share pickled on stdin); a failed worker raises with the end of its error output."""
    from tqdm.auto import tqdm

    count = min(len(names), profile.ablation.workers or min(os.cpu_count() or 1, 8))
    workers = [_Worker.start(profile, names[k::count]) for k in range(count)]
    bar = tqdm(total=len(names), disable=not progress, desc=f"{len(names)} runs, {count} at once")
    paths: dict[str, Path] = {}
    try:
        while len(paths) < len(names):
            for worker in workers:
                for name, path in worker.poll():
                    paths[name] = path
                    bar.update(1)
                    bar.set_postfix_str(name)
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.close()
        bar.close()
    return paths


@dataclass
class _Worker:
    """A share of the runs trained in its own interpreter with one thread. It prints ``<name>\t<path>``
    per finished run; its output goes to temporary files, read as it grows."""

    names: list[str]
    proc: subprocess.Popen
    out: Any
    err: Any
    seen: int = 0

    @classmethod
    def start(cls, profile: Profile, names: list[str]) -> "_Worker":
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        # The runs folder as this process resolves it (a test may have moved it), one thread.
        env = {**os.environ, "DISSAM_RUNS": str(profile.run_dir.parent), "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "dissam.repro.runs"], stdin=subprocess.PIPE, stdout=out,
                                stderr=err, env=env)
        proc.stdin.write(pickle.dumps((profile, names)))  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        return cls(names, proc, out, err)

    def close(self) -> None:
        """Stop the worker if it still runs (an error elsewhere, Ctrl-C), reap it and release its files."""
        self.proc.kill()
        self.proc.wait()
        self.out.close()
        self.err.close()

    def poll(self) -> list[tuple[str, Path]]:
        """Runs finished since the last call; RuntimeError with the worker's stderr if it died."""
        code = self.proc.poll()
        self.out.seek(0)
        lines = [line.split("\t") for line in self.out.read().decode().splitlines() if "\t" in line]
        new, self.seen = lines[self.seen:], len(lines)
        if code is not None and self.seen < len(self.names):
            self.err.seek(0)
            raise RuntimeError(f"training runs {self.names[self.seen:]} failed (exit {code}):\n"
                               f"{self.err.read().decode(errors='replace')[-3000:]}")
        return [(name, Path(path)) for name, path in new]


def _worker_main() -> None:
    """``python -m dissam.repro.runs``: train the runs (profile, names) pickled on stdin with one thread."""
    profile, names = pickle.loads(sys.stdin.buffer.read())
    numerics.apply(profile.numerics)  # the parent's environment came along; before the thread count
    torch.set_num_threads(1)
    for name in names:
        print(f"{name}\t{train_run(profile, name, progress=False)}", flush=True)


def run_budget(profile: Profile, run: str) -> str:
    """'<iterations> it' of a trained run, read from its last checkpoint (iteration budgets are what
    reproduce; minutes depend on the machine and are left out of the tables)."""
    state = load_checkpoint(RunSpec(name=run_name(profile, run)).last_checkpoint(profile))
    return f"{state['iteration']} it"


def describe(profile: Profile, with_numerics: bool = True) -> str:
    """'<profile> profile, <data>, stage 1 = <model>[, <numerics>]': what the reproduced rows and figures
    come from; on the CPU and ``with_numerics``, whose digits they are (portable numerics: every CPU's;
    native: this CPU's). Figure titles leave the numerics out (the captions of the tables say it)."""
    data = "procedural DIS-like data" if profile.data.root is None else f"data from {profile.data.root}"
    text = f"{profile.name} profile, {data}, stage 1 = {stage1_label(profile)}"
    if not with_numerics:
        return text
    if profile.numerics == "portable":
        return text + (", portable numerics (the same digits on every x86-64 CPU with AVX2: no spread "
                       "across CPUs)")
    if profile.device == "cpu":
        return text + f", native numerics (the digits of this CPU, {cpu_model()})"
    return text


# ----------------------------------------------------------------------------- table rows
def isnet_row(profile: Profile) -> tuple[str, str]:
    """(label, method) of Table I/II's IS-Net row: the published model when given, else our stand-in."""
    if profile.baselines.isnet_checkpoint is not None:
        return "IS-Net (published isnet.pth)", ISNET_OFFICIAL
    return f"IS-Net-style: RGB only, our recipe ({run_budget(profile, ISNET_RUN)})", ISNET_RUN


def baseline_methods(profile: Profile) -> dict[str, str]:
    """Stage 1, HQ-SAM (when its checkpoint is given), IS-Net, and the general-use IS-Net (when its weights
    are found): the rows before ours, {label: method}."""
    methods = {stage1_label(profile): STAGE1}
    if profile.baselines.hq_sam_checkpoint is not None:
        methods["HQ-SAM"] = HQ_SAM
    label, method = isnet_row(profile)
    methods[label] = method
    if general_isnet_weights(profile) is not None:
        size = profile.baselines.general_isnet_size
        px = "" if size == ISNET_INPUT_SIZE else f", {size} px input"
        methods[f"IS-Net (published general-use weights), zero-shot{px}"] = general_isnet_method(profile)
    return methods


def dissam_methods(profile: Profile, short: bool) -> dict[str, str]:
    """DIS-SAM's rows, {'DIS-SAM (<budget>)': run}: the main run, after the ablation-budget run when
    ``short`` and that run is not the main run itself."""
    methods = {}
    if short and run_name(profile, DISSAM_SHORT_RUN) != MAIN:
        methods[f"DIS-SAM ({run_budget(profile, DISSAM_SHORT_RUN)})"] = DISSAM_SHORT_RUN
    methods[f"DIS-SAM ({run_budget(profile, MAIN)})"] = MAIN
    if hqseg_runs(profile) and RunSpec(name=HQSEG_RUN).last_checkpoint(profile).exists():
        methods[f"DIS-SAM† (HQSeg-44K, {run_budget(profile, HQSEG_RUN)})"] = HQSEG_RUN
    return methods


# ----------------------------------------------------------------------------- predictions
def _write_predictions(out_dir: Path, preds: dict[str, np.ndarray]) -> None:
    for stem, pred in preds.items():
        save_prediction(pred, out_dir / f"{stem}.png")


def _read_predictions(out_dir: Path, stems: list[str]) -> dict[str, np.ndarray] | None:
    """Saved predictions, read by the one reader evaluation uses (no rescaling of faint maps)."""
    paths = [out_dir / f"{s}.png" for s in stems]
    if not all(p.exists() for p in paths):
        return None
    return {s: read_prediction(p) for s, p in zip(stems, paths)}


def empty_prediction(shape: tuple[int, ...]) -> np.ndarray:
    """The prediction of an image whose GT has no foreground (empty, or faint: no value above 128): no box
    can be drawn around nothing, so no method is prompted and the prediction is all zero (uint8 ``shape``)."""
    return np.zeros(shape[:2], dtype=np.uint8)


def _stage1_segmenter(profile: Profile, method: str):
    """None for the profile's stage 1 (cached masks, read by key); HQ-SAM built from its checkpoint."""
    if method == STAGE1:
        return None
    return stages.build_stage1(profile, kind="hq-sam",
                               checkpoint=_given(profile.baselines.hq_sam_checkpoint, "HQ-SAM"))


def stage1_predictions(profile: Profile, split: str, method: str = STAGE1) -> dict[str, np.ndarray]:
    """Stage-1 masks for the whole-GT box of each image (the 'SAM' / 'HQ-SAM' rows), through the cache."""
    out_dir = prediction_dir(profile, method, split)
    pairs = list_pairs(split_dir(profile, split))
    cached = _read_predictions(out_dir, [p.stem for p in pairs])
    if cached is not None:
        return cached

    source = stages.coarse_source(profile, split, segmenter=_stage1_segmenter(profile, method))
    preds = {}
    for pair in pairs:
        image, gt = pair.load()
        targets = whole_mask(gt)
        preds[pair.stem] = source(pair.stem, image, targets[0].box) if targets else empty_prediction(gt.shape)
    _write_predictions(out_dir, preds)
    return preds


def load_run(path: Path, device: str = "cpu", in_ch: int | None = None) -> tuple[torch.nn.Module, dict]:
    """A trained refiner on ``device`` (optimised for inference) and the train config it was trained with."""
    meta = load_checkpoint(path).get("train_config", {})
    model = load_refiner(path, in_ch=in_ch).to(device)
    return optimize_for_inference(model), meta


@torch.inference_mode()
def _refined(profile: Profile, run: str, split: str, sizes: dict[str, tuple[int, int]],
             batch_size: int) -> dict[str, np.ndarray]:
    """uint8 maps of a run on every sample of a split (one per image with GT foreground), at ``sizes``."""
    numerics.apply(profile.numerics)  # portable: no oneDNN convolutions (optimize_for_inference fuses none)
    device = profile.torch_device()
    published = _published(run)
    official = published is not None
    model, meta = load_run(checkpoint_of(profile, run), device, in_ch=3 if official else None)
    use_box, use_mask = meta.get("use_box", not official), meta.get("use_mask", not official)
    in_ch = 3 if official else meta.get("in_ch", 5)
    size = published or meta.get("size", profile.train.size)
    dataset = stages.refiner_dataset(profile, split, size=size, use_box=use_box, use_mask=use_mask, in_ch=in_ch)
    preds = {}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        probs = predict_prob(model, batch["input"].to(device)).float().cpu().numpy()[:, 0]
        for stem, prob in zip(batch["stem"], probs):
            preds[stem] = to_original(prob, *sizes[stem], minmax=True)
    return preds


def refiner_predictions(profile: Profile, run: str, split: str, batch_size: int = 16) -> dict[str, np.ndarray]:
    """uint8 maps of a trained run (or the official IS-Net) on a split, at each GT's resolution, saved as
    IS-Net's Inference.py saves them (upsampled, min-max normalised, x255); cached on disk. An image whose
    GT has no foreground gets :func:`empty_prediction` (the data set has no sample for it)."""
    out_dir = prediction_dir(profile, run, split)
    pairs = list_pairs(split_dir(profile, split))
    cached = _read_predictions(out_dir, [p.stem for p in pairs])
    if cached is not None:
        return cached
    sizes, preds = {}, {}
    for pair in pairs:
        gt = read_mask(pair.gt_path)
        sizes[pair.stem] = gt.shape
        if not whole_mask(gt):
            preds[pair.stem] = empty_prediction(gt.shape)
    if len(preds) < len(pairs):
        preds.update(_refined(profile, run, split, sizes, batch_size))
    _write_predictions(out_dir, preds)
    return preds


def predictions(profile: Profile, method: str, split: str) -> dict[str, np.ndarray]:
    if method in (STAGE1, HQ_SAM):
        return stage1_predictions(profile, split, method)
    return refiner_predictions(profile, method, split)


if __name__ == "__main__":
    _worker_main()
