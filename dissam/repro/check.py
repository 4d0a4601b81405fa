"""Acceptance check of a profile's real code path on one device, in minutes: ``python -m dissam.repro.check``.

On CUDA (the paper profile's target) it renders procedural scenes at the network size (1024^2) and
writes them at DIS5K size (3000 x 2500, 7.5 MP) in DIS5K layout, writes a randomly initialised SAM ViT-B
checkpoint, and runs stage 1 (SAM on the device) on those full-size images, the GT encoder and the
full-width refiner at the profile's batch size and precision, through the real loader and resized cache:
interrupted halfway, then resumed to the end, with validation, then evaluation on DIS-VD at full size,
and one DDP step under torchrun: NCCL with a GPU per rank, else two ranks on one GPU under gloo (NCCL
refuses two ranks on one device; :func:`ddp_plan`, :mod:`dissam.distributed`). On the CPU the same steps
run at 64 px with the toy SAM (model type ``tiny``) and a gloo DDP step, so CI exercises every one of them.

Iteration counts, never the clock, decide what runs. Each step is recorded (pass / fail / skipped,
seconds, details, and the error of a failed one) and a failure does not stop the later steps. The JSON
report adds peak memory, iterations per second of the resumed phase, the hours of the profile's main
run at that rate (``main_run_hours``) and seconds per evaluated image; ``main`` exits 1 when any step failed.

``--project`` then measures this machine's per-core CPU rates at DIS5K size (:mod:`dissam.repro.rates`) and
projects the whole paper profile, notebook by notebook, onto one GPU node (:mod:`dissam.repro.projection`;
``--cores``, default 16): ``projection.json`` beside the report, with ``projected_hours`` and
``gpu_busy_share``. The GPU step time is ``--gpu-step-s`` (default 0.15 s: IS-Net at 1024^2, batch 6,
fp32/TF32 on one H200), or the step this check measured when it trained at the paper's size, batch,
width and precision on a GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .. import cpuinfo
from ..data.folders import list_pairs
from ..data.procedural import generate_dataset
from ..data.splits import TRAIN_SPLIT, VAL_SPLIT
from ..model.checkpoint import load_checkpoint
from ..model.init import write_random_isnet
from . import runs, stages
from .config import PROFILES, Profile, get_profile, runs_root, split_dir
from .distributed import BACKEND_ENV, SHARE_GPUS_ENV, init_world, shutdown
from .evaluate import evaluate_method
from .pilot import add_pilot_arguments, run_pilot_from_args
from .projection import Assumptions, Node, project, table
from .rates import RateSpec, measure_rates
from .train import RunSpec, train_gt_encoder, train_refiner

REPORT_NAME = "check_report.json"
PROJECTION_NAME = "projection.json"
DEFAULT_GPU_STEP_S = 0.15  # assumed: IS-Net at 1024^2, batch 6, fp32/TF32, one H200 (0.10-0.20 s)
DDP_RESULT_NAME = "ddp_result.json"
DDP_RUN = "check_ddp"
DDP_TIMEOUT_S = 600  # a hung process group is ended, not waited for (no effect on a run that finishes)
PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass(frozen=True)
class CheckBudget:
    """Sizes of one check. ``limit_s`` is compared with the total wall time at the end (a step of its
    own); it never changes what runs."""

    size: int  # rendered and network size
    n_train: int
    n_val: int
    iters: int  # refiner iterations: interrupted after half, then resumed to the end
    gt_encoder_iters: int
    sam_model_type: str  # "vit_b": a random ViT-B checkpoint; "tiny": the toy SAM's
    batch_size: int | None = None  # None: the profile's
    width: float | None = None  # None: the profile's (paper: 1.0, the official IS-Net)
    num_workers: int = 0  # training DataLoader workers
    data_workers: int = 1  # processes rendering the procedural data
    ddp_processes: int = 2
    ddp_iters: int = 1
    ddp_batch_size: int | None = None  # None: the main runs'; train-mode BatchNorm needs >= 2 per process
    ddp_on_cpu: bool = False  # also run the DDP step on the CPU (gloo), not only with GPUs
    ddp_backend: str | None = None  # None: NCCL when each rank has a GPU of its own, else gloo (ddp_plan)
    share_gpus: bool = False  # with fewer GPUs than ranks, put the ranks on the visible GPUs (gloo)
    image_wh: tuple[int, int] | None = None  # (W, H) of the written images; None: ``size`` x ``size``
    autocast: str | None = None  # None: the profile's (TrainConfig.autocast); "bf16" or "none" to compare
    limit_s: float | None = None


DIS5K_WH = (3000, 2500)  # a DIS5K-size image, 7.5 MP (DIS5K's are 2-4k px on a side)
# GPU: DIS5K's image size, working size, batch and width; 128 training images make epochs of a few dozen
# iterations (DIS5K's are ~650). DDP: two ranks, on two GPUs under NCCL, else sharing one under gloo.
GPU_BUDGET = CheckBudget(size=1024, n_train=128, n_val=6, iters=300, gt_encoder_iters=20, sam_model_type="vit_b",
                         num_workers=8, data_workers=12, share_gpus=True, image_wh=DIS5K_WH, limit_s=480.0)
CPU_BUDGET = CheckBudget(size=64, n_train=6, n_val=2, iters=4, gt_encoder_iters=2, sam_model_type="tiny",
                         batch_size=2, ddp_batch_size=4, ddp_on_cpu=True)


class CheckFailed(AssertionError):
    """A step ran but its result is wrong."""


class SkipStep(Exception):
    """A step that does not apply here (e.g. DDP with one device)."""


@dataclass
class CheckRun:
    """What the steps share: the profile under test, its budget, and what earlier steps left."""

    profile_name: str
    profile: Profile
    budget: CheckBudget
    out: Path
    device: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    interrupted: Any = None  # TrainResult of the interrupted call
    resumed: Any = None  # TrainResult of the resumed call


# ----------------------------------------------------------------------------- set-up
def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_budget(device: str) -> CheckBudget:
    return GPU_BUDGET if device.startswith("cuda") else CPU_BUDGET


def build_check_profile(profile_name: str, budget: CheckBudget, out: Path, device: str) -> Profile:
    """The named profile with the budget's sizes, procedural DIS5K-layout data under ``out/data``, SAM
    stage 1 from the checkpoint written to ``out``, no wall-clock cap, in its own run folder (tag 'check')."""
    base = get_profile(profile_name)
    data = replace(base.data, root=out / "data", size=budget.size, n_train=budget.n_train, n_val=budget.n_val,
                   n_test=1, n_zero_shot=0, zero_shot_sets=(), seed=0)
    coarse = replace(base.coarse, kind="sam", checkpoint=out / f"sam_{budget.sam_model_type}_random.pth")
    train = replace(base.train, size=budget.size, width=budget.width or base.train.width,
                    batch_size=budget.batch_size or base.train.batch_size, max_iters=budget.iters,
                    val_every=max(1, budget.iters // 2), num_workers=budget.num_workers,
                    gt_encoder_iters=budget.gt_encoder_iters, seed=0)
    if budget.autocast is not None:
        train = replace(train, autocast=budget.autocast)
    train = replace(train, time_limit_minutes=None)  # iteration counts alone end the runs
    ablation = replace(base.ablation, max_iters=budget.iters)
    variant = replace(base.variant, sam_model_type=budget.sam_model_type)
    baselines = base.baselines  # refiner_init="isnet": a random IS-Net written beside the SAM (step_sam_checkpoint)
    if variant.refiner_init == "isnet" and baselines.isnet_checkpoint is None:
        baselines = replace(baselines, isnet_checkpoint=out / "isnet_random.pth")
    return replace(base, data=data, coarse=coarse, train=train, ablation=ablation, variant=variant,
                   baselines=baselines, device=device, tag="check")


def random_sam(model_type: str, seed: int = 0):
    """A randomly initialised SAM of ``model_type`` ('vit_b' or 'tiny'); the global RNG is left as it was."""
    import torch

    if model_type == "tiny":
        from ..coarse.tiny_sam import build_tiny_sam

        return build_tiny_sam(seed=seed)
    from segment_anything import sam_model_registry

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return sam_model_registry[model_type](checkpoint=None).eval()


# ----------------------------------------------------------------------------- step plumbing
def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run_step(run: CheckRun, name: str, func: Callable[[CheckRun], dict[str, Any] | None],
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one step; record its status, seconds, details and, when it failed, its error. Never raises
    (except KeyboardInterrupt), so the later steps still run."""
    start = time.perf_counter()
    try:
        record: dict[str, Any] = {"status": PASS, **(func(run) or {})}
    except SkipStep as why:
        record = {"status": SKIPPED, "reason": str(why)}
    except Exception as err:  # noqa: BLE001 - a failed step is recorded, not raised
        record = {"status": FAIL, "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc(limit=-8)}
    record["seconds"] = round(time.perf_counter() - start, 3)
    run.steps[name] = record
    if log is not None:
        extra = f": {record.get('error') or record.get('reason')}" if record["status"] != PASS else ""
        log(f"[check] {name}: {record['status']} ({record['seconds']:.1f} s){extra}")
    return record


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def _finite_losses(history: list[dict[str, Any]]) -> bool:
    return bool(history) and all(math.isfinite(float(v)) for h in history for k, v in h.items()
                                 if not k.startswith("val_") and isinstance(v, (int, float)))


# ----------------------------------------------------------------------------- steps
def step_sam_checkpoint(run: CheckRun) -> dict[str, Any]:
    """Write a randomly initialised SAM of the variant's model type where the profile reads its checkpoint."""
    import torch

    model = random_sam(run.profile.variant.sam_model_type)
    path = Path(run.profile.coarse.checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    isnet = run.profile.baselines.isnet_checkpoint
    if run.profile.variant.refiner_init == "isnet" and isnet is not None and not Path(isnet).is_file():
        write_random_isnet(isnet, run.profile.train.width)
    return {"checkpoint": str(path), "model_type": run.profile.variant.sam_model_type,
            "parameters": sum(p.numel() for p in model.parameters()), "megabytes": path.stat().st_size / 2**20}


def step_data(run: CheckRun) -> dict[str, Any]:
    """Render the procedural data set in DIS5K layout, then check it as the profile's DIS5K folder."""
    image_wh = run.budget.image_wh
    generate_dataset(run.profile.data_root, run.profile.data, progress=False, workers=run.budget.data_workers,
                     image_wh=tuple(image_wh) if image_wh else None)
    summary = stages.prepare_data(run.profile, progress=False)
    return {"root": str(run.profile.data_root), "size": run.profile.data.size, "image_wh": image_wh,
            "images": summary.get("splits")}


def step_stage1(run: CheckRun) -> dict[str, Any]:
    """Stage-1 masks of the training (whole and enriched) and validation splits, SAM on the device."""
    segmenter = stages.build_stage1(run.profile)
    model = getattr(segmenter, "model", None)
    device = str(next(model.parameters()).device) if model is not None else "cpu"
    manifests = stages.cache_stage1(run.profile, [TRAIN_SPLIT, VAL_SPLIT], segmenter=segmenter, progress=False)
    counts = {name: {k: m.get(k) for k in ("images", "boxes", "encoder_calls")} for name, m in manifests.items()}
    expect(all((c["boxes"] or 0) > 0 for c in counts.values()), f"a split has no stage-1 masks: {counts}")
    return {"segmenter": f"{run.profile.coarse.kind}/{run.profile.variant.sam_model_type}", "device": device,
            "splits": counts}


def step_gt_encoder(run: CheckRun) -> dict[str, Any]:
    """Phase 1: the GT encoder for the budget's iterations (retrained even when a checkpoint exists)."""
    path = train_gt_encoder(run.profile, progress=False, force=True)
    state = load_checkpoint(path)
    iterations = int(state.get("iterations", 0))
    expect(iterations > 0, "the GT encoder trained no iteration")
    return {"iterations": iterations, "val_maxF": state.get("val", {}).get("maxF"),
            "width": state.get("model_config", {}).get("width")}


def step_train_interrupted(run: CheckRun) -> dict[str, Any]:
    """Phase 2, first half: ``stop_after`` ends the call halfway, as an interruption would."""
    import torch


    half = run.budget.iters // 2
    if run.device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = train_refiner(run.profile, RunSpec(), resume=False, progress=False, stop_after=half)
    run.interrupted = result
    expect(result.iterations == half, f"stopped at iteration {result.iterations}, expected {half}")
    expect(result.last_checkpoint.is_file(), f"no last checkpoint at {result.last_checkpoint}")
    expect(_finite_losses(result.history), "a loss is not finite")
    return {"iterations": result.iterations, "loss": result.history[-1].get("total")}


def step_train_resumed(run: CheckRun) -> dict[str, Any]:
    """Phase 2, resumed from the last checkpoint to the end; its wall time gives iterations per second."""
    spec, total = RunSpec(), run.budget.iters
    last = spec.last_checkpoint(run.profile)
    resumed_from = int(load_checkpoint(last)["iteration"]) if last.is_file() else 0
    _sync(run.device)
    start = time.perf_counter()
    result = train_refiner(run.profile, spec, resume=True, progress=False)
    _sync(run.device)
    wall = time.perf_counter() - start
    run.resumed = result
    done = result.iterations - resumed_from
    _record_speed(run, result.history, resumed_from, done, wall)
    expect(0 < resumed_from < total, f"nothing to resume from (last checkpoint at iteration {resumed_from})")
    expect(result.iterations == total, f"ended at iteration {result.iterations}, expected {total}")
    expect([h["iteration"] for h in result.history] == list(range(1, total + 1)),
           "the history is not one unbroken run of iterations 1..N")
    if run.interrupted is not None:
        expect([h.get("total") for h in result.history[:resumed_from]] ==
               [h.get("total") for h in run.interrupted.history], "the resumed run lost the first half's history")
    expect(_finite_losses(result.history), "a loss is not finite")
    return {"resumed_from": resumed_from, "iterations": result.iterations, "wall_seconds": wall,
            "loss": result.history[-1].get("total")}


def _record_speed(run: CheckRun, history: list[dict[str, Any]], resumed_from: int, done: int, wall: float) -> None:
    """Iterations per second of the resumed phase (wall time, and between its first and last iteration),
    the hours the profile's main run alone would take at each (``main_run_hours``: its iterations only;
    ``--project`` projects the whole profile), and the peak GPU memory of training."""
    import torch

    full = get_profile(run.profile_name).train.max_iters
    metrics: dict[str, Any] = {"main_run_iterations": full}
    if done > 0 and wall > 0:
        metrics["iterations_per_second"] = done / wall
        metrics["main_run_hours"] = full / metrics["iterations_per_second"] / 3600
    if done > 1 and len(history) >= resumed_from + done:
        steady = history[resumed_from + done - 1]["seconds"] - history[resumed_from]["seconds"]
        if steady > 0:
            metrics["steady_iterations_per_second"] = (done - 1) / steady
            metrics["main_run_hours_steady"] = full / metrics["steady_iterations_per_second"] / 3600
    cuda = run.device.startswith("cuda") and torch.cuda.is_available()
    metrics["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    metrics["peak_gpu_reserved_gb"] = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    run.metrics.update(metrics)


def step_validation(run: CheckRun) -> dict[str, Any]:
    """Validation ran during training (``val_maxF`` in the history) and the best checkpoint was written."""
    expect(run.resumed is not None, "no training history: the resumed run failed")
    validations = [{"iteration": h["iteration"], "maxF": h["val_maxF"], "MAE": h.get("val_MAE")}
                   for h in run.resumed.history if "val_maxF" in h]
    expect(bool(validations), "no validation in the training history")
    expect(all(0.0 <= v["maxF"] <= 1.0 for v in validations), f"maxF out of [0, 1]: {validations}")
    expect(run.resumed.checkpoint.is_file(), f"no best checkpoint at {run.resumed.checkpoint}")
    return {"validations": validations, "best": run.resumed.best}


def step_evaluation(run: CheckRun) -> dict[str, Any]:
    """Predictions of the main run on DIS-VD and its six metrics (``runs``, ``evaluate``); seconds per image."""
    split = VAL_SPLIT
    images = len(list_pairs(split_dir(run.profile, split)))
    expect(images > 0, f"{split} has no images")
    start = time.perf_counter()
    runs.refiner_predictions(run.profile, runs.MAIN, split)  # on the profile's device
    _sync(run.device)
    predict_seconds = time.perf_counter() - start
    summary = evaluate_method(run.profile, runs.MAIN, split)  # reads the predictions back
    total = time.perf_counter() - start
    run.metrics["seconds_per_eval_image"] = total / images
    expect(bool(summary), "evaluation returned no metrics")
    return {"split": split, "images": images, "predict_seconds_per_image": predict_seconds / images,
            "metrics_seconds_per_image": (total - predict_seconds) / images, "metrics": summary}


@dataclass(frozen=True)
class DdpPlan:
    """How the DDP step runs: ``processes`` ranks on ``backend``; ``share_gpus``: ranks share the GPUs."""

    processes: int
    backend: str
    share_gpus: bool = False


def ddp_plan(device: str, visible_gpus: int, budget: CheckBudget) -> DdpPlan | None:
    """The DDP step's ranks and backend, or None when it cannot run here. CUDA with a GPU per rank: NCCL
    (or the budget's backend). CUDA with fewer GPUs (one, say) and ``share_gpus``: the ranks share them
    under gloo, since NCCL refuses two ranks on one device (gloo all-reduces CUDA tensors, and the
    BatchNorms then synchronise by all-reduce, :func:`dissam.distributed.batchnorm_kind`). CPU: gloo when
    the budget asks for it (``ddp_on_cpu``)."""
    n = budget.ddp_processes
    if n < 2:
        return None
    if not device.startswith("cuda"):
        return DdpPlan(n, "gloo") if budget.ddp_on_cpu else None
    if visible_gpus >= n:
        return DdpPlan(n, budget.ddp_backend or "nccl")
    if visible_gpus >= 1 and budget.share_gpus and budget.ddp_backend in (None, "gloo"):
        return DdpPlan(n, "gloo", share_gpus=True)
    return None


def step_ddp(run: CheckRun) -> dict[str, Any]:
    """One DDP training step of the refiner under torchrun, as :func:`ddp_plan` says (NCCL on a GPU per
    rank, gloo on ranks sharing a GPU or on the CPU)."""
    import torch


    plan = ddp_plan(run.device, torch.cuda.device_count() if torch.cuda.is_available() else 0, run.budget)
    if plan is None:
        raise SkipStep(f"needs {run.budget.ddp_processes} devices (or share_gpus); {run.device} has fewer visible")
    procs = plan.processes
    _release_cuda_memory()  # the ranks share this process's GPU
    result_path = run.out / DDP_RESULT_NAME
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           "-m", "dissam.repro.check", "--ddp-worker", "--profile", run.profile_name, "--device", run.device,
           "--out", str(run.out), "--budget-json", json.dumps(asdict(run.budget))]
    package_root = str(Path(__file__).resolve().parents[2])  # the ranks import this dissam, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           BACKEND_ENV: plan.backend, SHARE_GPUS_ENV: "1" if plan.share_gpus else "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DDP_TIMEOUT_S, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with {proc.returncode}: {_worker_error(proc.stderr + proc.stdout)}")
    result = json.loads(result_path.read_text())
    expect(result["world_size"] == procs, f"world size {result['world_size']}, expected {procs}")
    expect(result["iterations"] == run.budget.ddp_iters,
           f"{result['iterations']} DDP iterations, expected {run.budget.ddp_iters}")
    expect(result["finite"], "a DDP loss is not finite")
    return {**result, "backend": plan.backend, "share_gpus": plan.share_gpus}


def _release_cuda_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _worker_error(output: str, lines: int = 4) -> str:
    """The ranks' own error lines ('[rank0]: ValueError: ...') from torchrun's output, else its tail."""
    errors = [line for line in output.splitlines()
              if re.match(r"\[rank\d+\]: [A-Za-z_.]*(Error|Exception|Exceeded)\b", line)]
    return " | ".join(errors[-lines:]) if errors else output[-2000:]


def step_time_limit(run: CheckRun) -> dict[str, Any]:
    """The whole check stayed within the budget's wall-clock limit."""
    elapsed = sum(s["seconds"] for s in run.steps.values())
    expect(elapsed <= run.budget.limit_s, f"took {elapsed:.0f} s, over the {run.budget.limit_s:.0f} s limit")
    return {"elapsed_seconds": elapsed, "limit_seconds": run.budget.limit_s}


STEPS: tuple[tuple[str, Callable[[CheckRun], dict[str, Any] | None]], ...] = (
    ("sam_checkpoint", step_sam_checkpoint),
    ("data", step_data),
    ("stage1_cache", step_stage1),
    ("gt_encoder", step_gt_encoder),
    ("train_interrupted", step_train_interrupted),
    ("train_resumed", step_train_resumed),
    ("validation", step_validation),
    ("evaluation", step_evaluation),
    ("ddp", step_ddp),
)


# ----------------------------------------------------------------------------- the check
def run_check(profile_name: str = "paper", device: str | None = None, out: Path | None = None,
              budget: CheckBudget | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every step of the check on ``device`` (default: CUDA when available) and write the JSON report
    to ``out/check_report.json``; returns the report. ``budget`` defaults to the device's preset."""
    device = device or default_device()
    budget = budget or default_budget(device)
    out = Path(out) if out is not None else Path("runs") / f"check-{profile_name}"
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    start = time.perf_counter()
    with runs_root(out / "runs"):
        profile = build_check_profile(profile_name, budget, out, device)
        shutil.rmtree(profile.run_dir, ignore_errors=True)  # a fresh run: nothing to resume but our own
        run = CheckRun(profile_name, profile, budget, out, device)
        for name, func in STEPS:
            run_step(run, name, func, log)
        if budget.limit_s is not None:
            run_step(run, "time_limit", step_time_limit, log)
    run.metrics["total_seconds"] = time.perf_counter() - start
    run.metrics["peak_host_memory_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    report = build_report(run)
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2))
    return report


def build_report(run: CheckRun) -> dict[str, Any]:
    """The JSON report: what ran where, each step's record, the measurements and the verdict."""
    import torch

    cuda = run.device.startswith("cuda") and torch.cuda.is_available()
    cfg = run.profile.train
    autocast = getattr(cfg, "autocast", "bf16")  # a profile without the field autocasts on CUDA
    config = {"size": cfg.size, "batch_size": cfg.batch_size, "width": cfg.width, "iterations": cfg.max_iters,
              "interrupted_at": run.budget.iters // 2, "gt_encoder_iterations": cfg.gt_encoder_iters,
              "sam_model_type": run.profile.variant.sam_model_type, "num_workers": cfg.num_workers,
              "n_train": run.profile.data.n_train, "n_val": run.profile.data.n_val,
              "autocast": autocast, "amp_active": bool(cuda and autocast == "bf16")}
    failed = [name for name, step in run.steps.items() if step["status"] == FAIL]
    return _jsonable({
        "profile": run.profile_name, "device": run.device,
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "torch": torch.__version__, "out": str(run.out), "budget": asdict(run.budget), "config": config,
        "steps": run.steps, "metrics": run.metrics,
        "failed": failed, "passed": not failed,
    })


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars as numbers, paths as strings, non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- DDP worker and command line
def ddp_worker(profile_name: str, device: str, out: Path, budget: CheckBudget) -> int:
    """One rank of the DDP step (started by torchrun): train a separate run for ``budget.ddp_iters``."""
    with runs_root(out / "runs"):
        profile = build_check_profile(profile_name, budget, out, device)
        profile.train = replace(profile.train, batch_size=budget.ddp_batch_size or profile.train.batch_size)
        result = train_refiner(profile, RunSpec(name=DDP_RUN, max_iters=budget.ddp_iters), resume=False,
                               progress=False)
        world = init_world(profile.device)
        if world.is_main:
            payload = {"world_size": world.size, "iterations": result.iterations,
                       "loss": result.history[-1].get("total") if result.history else None,
                       "finite": _finite_losses(result.history)}
            (out / DDP_RESULT_NAME).write_text(json.dumps(_jsonable(payload)))
        shutdown(world)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The check's options (for ``dissam check``; ``--profile`` is the caller's to add)."""
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--out", type=Path, help="folder for data, runs and the report (default: runs/check-<profile>)")
    parser.add_argument("--budget", choices=("gpu", "cpu"), help="size preset (default: the device's)")
    parser.add_argument("--iters", type=int, help="refiner iterations (interrupted after half)")
    parser.add_argument("--autocast", choices=("none", "bf16"), help="override the profile's autocast (CUDA)")
    parser.add_argument("--project", action="store_true",
                        help="also measure this machine's CPU rates at DIS5K size and project the whole paper profile "
                             "onto one GPU node (projection.json)")
    parser.add_argument("--gpu-step-s", type=float, default=DEFAULT_GPU_STEP_S,
                        help="GPU seconds of one refiner step at 1024^2, batch 6, fp32/TF32 (default %(default)s, "
                             "an assumption for one H200; a GPU check that trained at that size uses its own)")
    parser.add_argument("--cores", type=int, default=16, help="CPU cores of the projected node (default %(default)s)")
    parser.add_argument("--rate-image-wh", type=int, nargs=2, metavar=("W", "H"), help=argparse.SUPPRESS)
    parser.add_argument("--rate-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate-images", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget-json", help=argparse.SUPPRESS)

    add_pilot_arguments(parser)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the check (or one DDP rank) as ``args`` say; 0 when every step passed or was skipped, else 1."""
    if getattr(args, "pilot", False):
        return run_pilot_from_args(args)
    profile_name = getattr(args, "profile", None) or "paper"
    device = args.device or default_device()
    if args.budget_json:
        budget = CheckBudget(**json.loads(args.budget_json))
    else:
        budget = {"gpu": GPU_BUDGET, "cpu": CPU_BUDGET}.get(args.budget or "", default_budget(device))
    if args.iters:
        budget = replace(budget, iters=args.iters)
    if args.autocast:
        budget = replace(budget, autocast=args.autocast)
    if args.ddp_worker:
        return ddp_worker(profile_name, device, Path(args.out), budget)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    report = run_check(profile_name, device, args.out, budget, log=log)
    if getattr(args, "project", False):
        projection = run_projection(report, rate_spec_from_args(args), args.gpu_step_s, args.cores, log)
        print(projection_table(projection))
        report["metrics"].update(projected_hours=projection["projected_hours"],
                                 gpu_busy_share=projection["gpu_busy_share"])
        (Path(report["out"]) / REPORT_NAME).write_text(json.dumps(report, indent=2))
        print(f"projection: {Path(report['out']) / PROJECTION_NAME}", file=sys.stderr)
    print(json.dumps({k: report[k] for k in ("metrics", "failed", "passed")}, indent=2))
    print(f"report: {Path(report['out']) / REPORT_NAME}", file=sys.stderr)
    return 0 if report["passed"] else 1


# ----------------------------------------------------------------------------- --project
def rate_spec_from_args(args: argparse.Namespace):
    """The rates' sizes: DIS5K size by default; smaller ones (hidden options) for the tests."""
    spec = RateSpec()
    if getattr(args, "rate_image_wh", None):
        spec = replace(spec, image_wh=tuple(args.rate_image_wh))
    if getattr(args, "rate_size", None):
        spec = replace(spec, size=args.rate_size)
    if getattr(args, "rate_images", None):
        spec = replace(spec, n_train=args.rate_images, n_val=max(1, args.rate_images // 2))
    return spec


def measured_step_s(report: dict[str, Any]) -> float | None:
    """The GPU step time this check measured, when it trained as the paper profile trains: on CUDA, at
    its network size, batch, width and precision, from DIS5K-size images (steady rate of the resumed
    phase); None otherwise (then the projection assumes a step time)."""
    if not report.get("device", "").startswith("cuda") or report.get("device_name") == "cpu":
        return None
    paper, config, budget = get_profile(report["profile"]).train, report["config"], report["budget"]
    same = (config["size"] == paper.size and config["batch_size"] == paper.batch_size
            and config["width"] == paper.width and config["autocast"] == paper.autocast and budget.get("image_wh"))
    rate = report["metrics"].get("steady_iterations_per_second") or report["metrics"].get("iterations_per_second")
    return 1.0 / rate if same and rate else None


def run_projection(report: dict[str, Any], spec=None, gpu_step_s: float = DEFAULT_GPU_STEP_S, cores: int = 16,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure this machine's rates (:func:`dissam.repro.rates.measure_rates`), project the paper profile onto a
    node of ``cores`` cores and one GPU (:func:`dissam.repro.projection.project`) and write ``projection.json``
    into the check's folder; returns the projection (with the rates, the CPU and what was measured where)."""
    rates = measure_rates(None, spec or RateSpec(), log)
    measured = measured_step_s(report)
    assumptions = Assumptions(gpu_step_s=measured or gpu_step_s)
    numbers = {k: v for k, v in rates.items() if isinstance(v, float) and k != "seconds"}
    projection = project(numbers, assumptions, Node(cores=cores), step_measured=measured is not None)
    projection["rates"] = rates
    projection["cpu"] = {"model": cpuinfo.cpu_model(), "flags": cpuinfo.cpu_flags(), "logical_cores": os.cpu_count(),
                         "line": cpuinfo.cpu_line()}
    projection["measured_on"] = {"device": report.get("device"), "device_name": report.get("device_name"),
                                 "gpu_step_measured": measured is not None, "check_passed": report.get("passed")}
    projection = _jsonable(projection)
    (Path(report["out"]) / PROJECTION_NAME).write_text(json.dumps(projection, indent=2))
    return projection


def projection_table(projection: dict[str, Any]) -> str:
    return table(projection)


def main(argv: list[str] | None = None) -> int:
    """``python -m dissam.repro.check [--profile paper] [--device cuda] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="dissam check", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="paper", help="profile under test (default: paper)")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
