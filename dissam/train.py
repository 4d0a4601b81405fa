"""Training: phase 1 fits the GT encoder on GT masks alone, phase 2 the refiner with that encoder frozen.

One loop for every profile and world size. Budgets are iteration counts (the LR schedule's horizon), so
a run trains the same model on a fast or a slow machine; an optional time limit only stops a run loudly
(:class:`TimeLimitExceeded`), never silently. Checkpoints are written atomically through
:mod:`dissam.model.checkpoint` and carry the model config, optimiser, RNG states, iteration and history,
so a stopped run resumes exactly where it was, on any device.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from . import stages
from .config import Profile, TrainConfig, Variant
from .data.splits import TRAIN_SPLIT, VAL_SPLIT
from .distributed import World, any_across, barrier, init_world, mean_across, sync_batchnorm
from .metrics.running import RunningScores
from .model.checkpoint import load_checkpoint, save_gt_encoder, save_refiner


class TimeLimitExceeded(RuntimeError):
    """A run passed its ``time_limit_minutes`` guard; its last checkpoint is saved, rerun to resume."""


@dataclass
class RunSpec:
    """One training run of the refiner: its inputs (Table III's switches) and its budget."""

    name: str = "main"
    use_box: bool = True
    use_mask: bool = True
    enrich: bool = True
    in_ch: int = 5
    max_iters: int | None = None  # None: the profile's

    def checkpoint(self, profile: Profile) -> Path:
        if self.name == "main":
            return profile.refiner_checkpoint
        return profile.checkpoint_dir / f"{self.name}.pt"

    def last_checkpoint(self, profile: Profile) -> Path:
        best = self.checkpoint(profile)
        return best.with_name(best.stem + "_last.pt")


@dataclass
class TrainResult:
    checkpoint: Path
    last_checkpoint: Path
    iterations: int
    seconds: float
    best: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


def lr_at(iteration: int, cfg: TrainConfig, horizon: int, peak: float) -> float:
    """Linear warm-up to ``peak``, then constant or cosine decay to zero over ``horizon`` iterations."""
    warmup = int(cfg.warmup_frac * horizon)
    if iteration < warmup:
        return peak * (iteration + 1) / warmup
    if cfg.schedule == "constant":
        return peak
    progress = (iteration - warmup) / max(1, horizon - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(params, variant: Variant, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (paper, IS-Net) or AdamW (authors' code); betas (0.9, 0.999), eps 1e-8 and the given weight
    decay (0 in both references) either way."""
    cls = torch.optim.AdamW if variant.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states saved by :func:`_rng_state`; every state is a CPU ByteTensor whatever device
    the run trains on (``torch.set_rng_state`` refuses a CUDA tensor)."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(("MT19937", state["numpy"].cpu().numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(profile: Profile, world: World) -> torch.device:
    if profile.device.startswith("cuda") and torch.cuda.is_available():
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _time_up(start: float, minutes: float | None) -> bool:
    return minutes is not None and time.perf_counter() - start >= 60.0 * minutes


def _check_time_limit(start: float, minutes: float | None, world: World, what: str) -> None:
    if any_across(_time_up(start, minutes), world):
        raise TimeLimitExceeded(f"{what} passed its time limit of {minutes} min; its last checkpoint is saved. "
                                "Budgets are iteration counts: raise time_limit_minutes (or set it to None) "
                                "and run again to resume.")


# ----------------------------------------------------------------------------- phase 1: GT encoder
def train_gt_encoder(profile: Profile, progress: bool = True, force: bool = False) -> Path:
    """Fit the GT encoder to reproduce GT masks (the variant's loss on its six side outputs, optimiser and
    rate) until its maxF on the validation GTs exceeds the target or the iteration cap is reached.
    Validated every ``gt_encoder_val_every`` iterations (else ``val_every``); returns its checkpoint."""
    from .data.datasets import RefinerDataset
    from .losses import gt_encoder_loss, ortho_penalty
    from .model import build_gt_encoder

    path = profile.gt_encoder_checkpoint
    if path.exists() and not force:
        return path
    cfg, variant = profile.train, profile.variant
    world = init_world(profile.device)
    device = _device(profile, world)
    seed_everything(cfg.seed)
    preload = profile.name != "paper"
    augment = None if variant.augment == "none" else variant.augment
    train_ds = RefinerDataset(stages.split_dir(profile, TRAIN_SPLIT), None, cfg.size,
                              enrichment=variant.enrichment if cfg.enrich else None, augment=augment,
                              use_box=False, use_mask=False, in_ch=3, preload=preload)
    val_ds = RefinerDataset(stages.split_dir(profile, VAL_SPLIT), None, cfg.size, enrichment=None,
                            augment=None, use_box=False, use_mask=False, in_ch=3, preload=preload)
    encoder = build_gt_encoder(width=cfg.width).to(device)
    optimizer = make_optimizer(encoder.parameters(), variant, profile.gt_encoder_lr, cfg.weight_decay)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed))
    check_every = cfg.gt_encoder_val_every or cfg.val_every
    it, score, start = 0, {"maxF": 0.0}, time.perf_counter()
    bar = tqdm(total=cfg.gt_encoder_iters, desc="GT encoder", disable=not progress)
    while it < cfg.gt_encoder_iters and score["maxF"] <= cfg.gt_encoder_target_maxf:
        for batch in loader:
            gt = batch["gt"].to(device)
            maps, _ = encoder(gt)
            loss = gt_encoder_loss(maps, gt, variant.gt_encoder_loss)
            if variant.ortho_gt_encoder and variant.ortho_weight:
                loss = loss + variant.ortho_weight * ortho_penalty(encoder, variant.ortho)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            it += 1
            bar.update(1)
            if it % check_every == 0 or it == cfg.gt_encoder_iters:
                score = _validate(encoder, val_ds, device, cfg.batch_size, input_key="gt")
                bar.set_postfix(loss=f"{loss.item():.3f}", maxF=f"{score['maxF']:.4f}")
            _check_time_limit(start, cfg.time_limit_minutes, world, "GT-encoder training")
            if it >= cfg.gt_encoder_iters or score["maxF"] > cfg.gt_encoder_target_maxf:
                break
    bar.close()
    if world.is_main:
        save_gt_encoder(encoder.eval(), path, iterations=it, val=score)
    barrier(world)
    return path


# ----------------------------------------------------------------------------- phase 2: refiner
@torch.inference_mode()
def _validate(model: nn.Module, dataset, device: torch.device, batch_size: int,
              input_key: str = "input") -> dict[str, float]:
    """maxF and MAE of maps[0] on a whole (non-augmented) data set at network size, scored batch by
    batch (one batch of maps in memory at a time)."""
    was_training = model.training
    model.eval()
    scores = RunningScores()
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator()):
        x = batch[input_key].to(device).contiguous(memory_format=torch.channels_last)
        maps, _ = model(x)
        scores.update(maps[0], batch["gt"])
    model.train(was_training)
    return scores.result()


def _load_frozen_gt_encoder(profile: Profile, device: torch.device) -> nn.Module:
    """The GT encoder with frozen weights. Its BatchNorms use batch statistics (train mode) as in both
    references, unless the variant asks for running statistics (``gt_encoder_bn="running"``)."""
    from .model.checkpoint import load_gt_encoder

    encoder = load_gt_encoder(train_gt_encoder(profile)).to(device)
    encoder.train(profile.variant.gt_encoder_bn == "batch")
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder


def _train_step(model: nn.Module, gt_encoder: nn.Module | None, batch: dict, optimizer, profile: Profile,
                device: torch.device) -> dict[str, float]:
    """One optimisation step. fp32 by default, as both references train; with ``autocast="bf16"``
    (CUDA only) autocast wraps the forward passes alone: the side maps leave the model in fp32 and the
    losses run in fp32 outside it (binary_cross_entropy on probabilities is refused under CUDA autocast)."""
    from .losses import dis_sam_loss

    cfg, variant = profile.train, profile.variant
    use_amp = device.type == "cuda" and cfg.autocast == "bf16"
    x = batch["input"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    gt = batch["gt"].to(device, non_blocking=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
        maps, features = model(x)
        gt_features = None
        if gt_encoder is not None:
            with torch.no_grad():
                _, gt_features = gt_encoder(gt)
    total, terms = dis_sam_loss(
        [m.float() for m in maps], gt,
        features=[f.float() for f in features] if gt_features is not None else None,
        gt_features=[f.float() for f in gt_features] if gt_features is not None else None,
        model=_unwrap(model), w_bce=cfg.w_bce, w_iou=cfg.w_iou, w_feature=cfg.w_feature,
        w_ortho=variant.ortho_weight, ortho=variant.ortho)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return terms


def build_run_datasets(profile: Profile, spec: RunSpec):
    """The run's training set (enriched or not) and the validation set, with the spec's input switches."""
    from .data.datasets import RefinerDataset

    cfg, variant = profile.train, profile.variant
    preload = profile.name != "paper"
    kwargs = dict(size=cfg.size, use_box=spec.use_box, use_mask=spec.use_mask, in_ch=spec.in_ch, preload=preload)
    train_coarse = stages.coarse_source(profile, TRAIN_SPLIT) if spec.use_mask else None
    val_coarse = stages.coarse_source(profile, VAL_SPLIT) if spec.use_mask else None
    train_ds = RefinerDataset(stages.split_dir(profile, TRAIN_SPLIT), train_coarse,
                              enrichment=variant.enrichment if spec.enrich else None,
                              augment=None if variant.augment == "none" else variant.augment, **kwargs)
    val_ds = RefinerDataset(stages.split_dir(profile, VAL_SPLIT), val_coarse, enrichment=None,
                            augment=None, **kwargs)
    return train_ds, val_ds


def train_refiner(profile: Profile, spec: RunSpec | None = None, resume: bool = True, progress: bool = True,
                  stop_after: int | None = None, datasets=None) -> TrainResult:
    """Train (or resume) one refiner run; returns where its best and last checkpoints are.

    A run whose last checkpoint already reached its budget returns at once (nothing is rebuilt,
    restored or trained). ``stop_after`` ends this call after that many iterations without changing
    the schedule (an interruption, for tests); the next call with ``resume=True`` continues exactly.
    """
    from .model import build_refiner

    spec = spec or RunSpec()
    cfg, variant = profile.train, profile.variant
    horizon = spec.max_iters or cfg.max_iters
    best_path, last_path = spec.checkpoint(profile), spec.last_checkpoint(profile)
    # Read once, onto the CPU whatever the device: load_state_dict copies weights and optimiser state to
    # the parameters' device, and RNG states must stay CPU tensors.
    state = load_checkpoint(last_path, map_location="cpu") if resume and last_path.exists() else None
    if state is not None and state["iteration"] >= horizon and best_path.exists():
        return TrainResult(best_path, last_path, state["iteration"], state["seconds"], state["best"], state["history"])
    world = init_world(profile.device)
    device = _device(profile, world)
    if cfg.batch_size % world.size:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {world.size} processes")

    train_ds, val_ds = datasets or build_run_datasets(profile, spec)
    seed_everything(cfg.seed)  # the same initial weights on every rank
    model = build_refiner(in_ch=spec.in_ch, width=cfg.width).to(device).to(memory_format=torch.channels_last)
    gt_encoder = _load_frozen_gt_encoder(profile, device) if cfg.use_gt_encoder else None
    if gt_encoder is not None and gt_encoder.training and world.distributed:
        gt_encoder = sync_batchnorm(gt_encoder, device)  # batch statistics of the global batch, as on one device
    optimizer = make_optimizer(model.parameters(), variant, profile.refiner_lr, cfg.weight_decay)
    seed_everything(cfg.seed + world.rank)  # augmentation differs per rank
    it, seconds, history, best = 0, 0.0, [], {"maxF": -1.0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        it, seconds, history, best = state["iteration"], state["seconds"], state["history"], state["best"]
        _set_rng_state(state["rng"][min(world.rank, len(state["rng"]) - 1)])
    if world.distributed:
        model = nn.parallel.DistributedDataParallel(sync_batchnorm(model, device))
    model.train()

    def save(path: Path, full: bool) -> None:
        """Best (weights only, rank 0 alone) or last (every rank: the RNG states are gathered)."""
        rng = [_rng_state()]
        if full and world.distributed:
            gathered: list[Any] = [None] * world.size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if not world.is_main:
            return
        extra = dict(iteration=it, seconds=seconds, best=best, history=history, profile=profile.name,
                     variant=asdict(variant), train_config={**asdict(cfg), **asdict(spec), "size": cfg.size,
                                                            "horizon": horizon, "lr": profile.refiner_lr})
        if full:
            extra.update(optimizer=optimizer.state_dict(), rng=rng)
        save_refiner(_unwrap(model), path, **extra)

    per_rank = cfg.batch_size // world.size
    sampler = DistributedSampler(train_ds, num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training samples cannot fill one batch of {cfg.batch_size}")
    start, done_now = time.perf_counter() - seconds, 0
    bar = tqdm(total=horizon, initial=it, desc=f"refiner {spec.name}", disable=not (progress and world.is_main))
    try:
        stopped = it >= horizon or stop_after == 0
        while not stopped:
            epoch, position = divmod(it, steps_per_epoch)
            sampler.set_epoch(epoch)
            order = list(sampler)
            batches = [order[i * per_rank:(i + 1) * per_rank] for i in range(position, steps_per_epoch)]
            # A private generator: creating the loader must not draw from the global RNG, whose
            # state the checkpoint restores (augmentation draws from it).
            loader = DataLoader(train_ds, batch_sampler=batches, num_workers=cfg.num_workers,
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            for batch in loader:
                lr = lr_at(it, cfg, horizon, profile.refiner_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                terms = mean_across(_train_step(model, gt_encoder, batch, optimizer, profile, device), world)
                it, done_now = it + 1, done_now + 1
                seconds = time.perf_counter() - start
                history.append({"iteration": it, "seconds": seconds, "lr": lr, **terms})
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items() if k in ("total", "bce", "iou", "feature")})
                finished = it >= horizon
                if it % cfg.val_every == 0 or finished:
                    score = _validate(_unwrap(model), val_ds, device, cfg.batch_size) if world.is_main else {}
                    if world.is_main:
                        history[-1].update({f"val_{k}": v for k, v in score.items()})
                        bar.write(f"[{spec.name}] iter {it}: val maxF {score['maxF']:.4f} MAE {score['MAE']:.4f}")
                        if score["maxF"] > best["maxF"]:
                            best = {"iteration": it, **score}
                            save(best_path, full=False)
                    save(last_path, full=True)
                if finished or (stop_after is not None and done_now >= stop_after):
                    stopped = True
                    break
                _check_time_limit(start, cfg.time_limit_minutes, world, f"refiner run {spec.name!r}")
    except (KeyboardInterrupt, TimeLimitExceeded):
        save(last_path, full=True)
        bar.write(f"stopped at iteration {it}: saved {last_path}; run again to resume")
        raise
    finally:
        bar.close()
    save(last_path, full=True)
    if world.is_main and not best_path.exists():
        save(best_path, full=False)
    barrier(world)
    return TrainResult(best_path, last_path, it, seconds, best, history)
