"""Training: phase 1 fits the GT encoder on GT masks alone, phase 2 the refiner with that encoder frozen.

One loop (:func:`_run_loop`) serves both phases, every profile and every world size; each phase brings
its parts as a :class:`Loop`: the model, what a batch's loss is (:class:`GTEncoderObjective`,
:class:`RefinerObjective`), its data and validated input, and its :class:`Checkpoints`. Budgets are
iteration counts (the LR schedule's horizon), so a run trains the same model on a fast or a slow machine;
an optional time limit only stops a run loudly (:class:`TimeLimitExceeded`), never silently. Checkpoints
are written atomically through :mod:`dissam.model.checkpoint`. The refiner's last checkpoint carries the
model config, optimiser, RNG states, iteration and history, so a stopped run resumes exactly where it
was, on any device; the GT encoder is written once, when phase 1 ends (a stopped phase 1 starts again).
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, Sampler
from tqdm.auto import tqdm

from .. import losses, numerics
from ..data.datasets import RefinerDataset, TrainingItems, draw_flips
from ..data.splits import TRAIN_SPLIT, VAL_SPLIT
from ..metrics.running import RunningScores
from ..model import build_gt_encoder
from ..model.checkpoint import load_checkpoint, load_gt_encoder, save_gt_encoder, save_refiner
from ..model.init import freeze_for_finetuning, initial_refiner, zero_side_outputs
from ..model.onnx_import import has_identity_batchnorms
from ..variant import Variant
from .config import Profile, TrainConfig, run_checkpoint, run_last_checkpoint
from .distributed import World, any_across, barrier, init_world, mean_across, sync_batchnorm
from .stages import refiner_dataset, stage1_spec


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
        return run_checkpoint(profile, self.name)

    def last_checkpoint(self, profile: Profile) -> Path:
        return run_last_checkpoint(profile, self.name)

    def horizon(self, profile: Profile) -> int:
        """The run's iteration budget (the LR schedule's horizon)."""
        return self.max_iters or profile.train.max_iters


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


def make_optimizer(params, variant: Variant, lr: float, weight_decay: float = 0.0,
                   device: torch.device | str = "cuda") -> torch.optim.Optimizer:
    """Adam (paper, IS-Net) or AdamW (authors' code); betas (0.9, 0.999), eps 1e-8 and the given weight
    decay (0 in both references) either way. On the CPU the fused implementation (the same update in one
    kernel, a faster smoke training step: docs/benchmarks.md, "Training speed"); elsewhere torch's default."""
    cls = torch.optim.AdamW if variant.optimizer == "adamw" else torch.optim.Adam
    fused = True if torch.device(device).type == "cpu" else None
    return cls(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay, fused=fused)


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states: torch (CPU), NumPy, Python and, on CUDA, its own device's alone (a
    rank's checkpointed state must not depend on how many GPUs the machine shows)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": random.getstate(),
            "cuda_device": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore RNG states saved by :func:`_rng_state`, the CUDA one onto this process's ``device`` only
    (so a run resumes on fewer visible GPUs, or on the CPU); every state is a CPU ByteTensor whatever
    device the run trains on (``torch.set_rng_state`` refuses a CUDA tensor). Checkpoints written before
    the CUDA state was per device hold every visible device's (``"cuda"``): the device's own is used."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(("MT19937", state["numpy"].cpu().numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(state["python"])
    if device.type != "cuda":
        return
    cuda = state.get("cuda_device")
    if cuda is None and device.index is not None and device.index < len(state.get("cuda") or []):
        cuda = state["cuda"][device.index]
    if cuda is not None:
        torch.cuda.set_rng_state(cuda.cpu(), device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _time_up(start: float, minutes: float | None) -> bool:
    return minutes is not None and time.perf_counter() - start >= 60.0 * minutes


def _check_time_limit(start: float, minutes: float | None, world: World, what: str) -> None:
    if any_across(_time_up(start, minutes), world):
        raise TimeLimitExceeded(f"{what} passed its time limit of {minutes} min; its last checkpoint is saved. "
                                "Budgets are iteration counts: raise time_limit_minutes (or set it to None) "
                                "and run again to resume.")


# ----------------------------------------------------------------------------- the shared loop
class Objective(Protocol):
    """What a batch's loss is, in one phase: ``forward`` runs the networks (under autocast when the run
    asks for bf16), ``loss`` turns their outputs into the loss to minimise and the terms to log."""

    def forward(self, batch: dict) -> Any: ...

    def loss(self, outputs: Any, batch: dict) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class Checkpoints:
    """Where a phase's weights go. ``best``: weights and ``meta`` when validation maxF improves (rank 0);
    ``last``: weights, ``meta``, optimiser and every rank's RNG state at each validation, at the end and
    on an interruption, for an exact resume; ``final``: weights and ``meta`` once, at the end."""

    write: Callable[..., Path]  # save_refiner or save_gt_encoder
    meta: Callable[[Loop], dict[str, Any]]  # the keys stored beside the weights
    best: Path | None = None
    last: Path | None = None
    final: Path | None = None


@dataclass
class Loop:
    """One phase's run as the shared loop (:func:`_run_loop`) drives it: the phase's parts, then its state."""

    name: str  # validation lines
    desc: str  # progress bar
    what: str  # errors
    model: nn.Module  # what is trained (wrapped in DDP when distributed)
    objective: Objective
    optimizer: torch.optim.Optimizer
    lr: Callable[[int], float]  # the rate of an iteration
    batches: Callable[[int], Iterable[dict]]  # the batches from an iteration to the end of the budget
    to_network: Callable[[dict], dict]  # a loaded batch -> {"input", "gt"} float32 on the device
    val_batches: Iterable[dict]  # the validation set, unaugmented, in order
    input_key: str  # what validation feeds the model: "input" (refiner) or "gt" (GT encoder)
    horizon: int  # the iteration budget
    val_every: int
    checkpoints: Checkpoints
    world: World
    device: torch.device
    time_limit_minutes: float | None = None
    bf16: bool = False  # autocast the forward passes (CUDA)
    target_maxf: float | None = None  # stop once validation maxF exceeds it
    it: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=lambda: {"maxF": -1.0})
    score: dict[str, float] = field(default_factory=lambda: {"maxF": 0.0})  # the last validation's
    reached_target: bool = False

    @property
    def finished(self) -> bool:
        return self.it >= self.horizon or self.reached_target


def _train_step(objective: Objective, batch: dict, optimizer: torch.optim.Optimizer, device: torch.device,
                bf16: bool = False) -> dict[str, float]:
    """One optimisation step. fp32 by default, as both references train; with ``bf16`` (CUDA only)
    autocast wraps the forward passes alone: the side maps leave the model in fp32 and the losses run
    in fp32 outside it (binary_cross_entropy on probabilities is refused under CUDA autocast)."""
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = objective.forward(batch)
    total, terms = objective.loss(outputs, batch)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return terms


def _save(run: Loop, path: Path, full: bool) -> None:
    """Write ``path`` on rank 0; ``full`` adds the optimiser and the RNG states (gathered from every
    rank, so every rank must call it)."""
    rng = [_rng_state(run.device)]
    if full and run.world.distributed:
        gathered: list[Any] = [None] * run.world.size
        torch.distributed.all_gather_object(gathered, rng[0])
        rng = gathered
    if not run.world.is_main:
        return
    extra = run.checkpoints.meta(run)
    if full:
        extra.update(optimizer=run.optimizer.state_dict(), rng=rng)
    run.checkpoints.write(_unwrap(run.model), path, **extra)


def _resume(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any] | None,
            world: World, device: torch.device) -> dict[str, Any]:
    """Continue from a last checkpoint (read onto the CPU): weights, optimiser and this rank's RNG
    restored; returns the loop's counters (fresh ones without a checkpoint)."""
    if state is None:
        return {}
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"][min(world.rank, len(state["rng"]) - 1)], device)
    return dict(it=state["iteration"], seconds=state["seconds"], history=state["history"], best=state["best"])


def _step(run: Loop, batch: dict, start: float, bar: tqdm) -> None:
    """Set the scheduled rate, take one step, log it (losses averaged over the ranks)."""
    lr = run.lr(run.it)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    terms = mean_across(_train_step(run.objective, run.to_network(batch), run.optimizer, run.device, run.bf16),
                        run.world)
    run.it += 1
    run.seconds = time.perf_counter() - start
    run.history.append({"iteration": run.it, "seconds": run.seconds, "lr": lr, **terms})
    bar.update(1)
    bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items() if k in ("total", "bce", "iou", "feature")})


def _validate_and_keep(run: Loop, bar: tqdm) -> None:
    """Score the model on the validation set (rank 0), keep the best, save the checkpoints a validation writes."""
    main = run.world.is_main
    score = _validate(_unwrap(run.model), run.val_batches, run.to_network, run.input_key) if main else {}
    improved = False
    if main:
        run.history[-1].update({f"val_{k}": v for k, v in score.items()})
        bar.write(f"[{run.name}] iter {run.it}: val maxF {score['maxF']:.4f} MAE {score['MAE']:.4f}")
        improved = score["maxF"] > run.best["maxF"]
        if improved:
            run.best = {"iteration": run.it, **score}
    run.score = score
    if run.target_maxf is not None:
        run.reached_target = any_across(main and score["maxF"] > run.target_maxf, run.world)
    if improved and run.checkpoints.best is not None:
        _save(run, run.checkpoints.best, full=False)
    if run.checkpoints.last is not None:
        _save(run, run.checkpoints.last, full=True)


def _run_loop(run: Loop, progress: bool = True, stop_after: int | None = None) -> None:
    """Train until the budget (or the target score) is reached, validating every ``val_every`` iterations
    and at the end. ``stop_after`` ends this call after that many iterations without changing the
    schedule. Past the time limit, or on Ctrl-C, the last checkpoint is saved and the error raised."""
    start, done_now = time.perf_counter() - run.seconds, 0
    bar = tqdm(total=run.horizon, initial=run.it, desc=run.desc, disable=not (progress and run.world.is_main))
    try:
        stopped = run.finished or stop_after == 0
        while not stopped:
            for batch in run.batches(run.it):
                _step(run, batch, start, bar)
                done_now += 1
                if run.it % run.val_every == 0 or run.it >= run.horizon:
                    _validate_and_keep(run, bar)
                if run.finished or (stop_after is not None and done_now >= stop_after):
                    stopped = True
                    break
                _check_time_limit(start, run.time_limit_minutes, run.world, run.what)
    except (KeyboardInterrupt, TimeLimitExceeded):
        if run.checkpoints.last is not None:
            _save(run, run.checkpoints.last, full=True)
            bar.write(f"stopped at iteration {run.it}: saved {run.checkpoints.last}; run again to resume")
        raise
    finally:
        if run.finished and bar.n < bar.total:  # stopped early at its target score: the bar ends at 100%
            bar.total = bar.n
            bar.refresh()
        bar.close()
    _finish(run)


def _finish(run: Loop) -> None:
    """The checkpoints written when a call ends: last, best (when no validation wrote one), final."""
    ckpt = run.checkpoints
    if ckpt.last is not None:
        _save(run, ckpt.last, full=True)
    if ckpt.best is not None and run.world.is_main and not ckpt.best.exists():
        _save(run, ckpt.best, full=False)
    if ckpt.final is not None:
        _save(run, ckpt.final, full=False)
    barrier(run.world)


def _fills_a_batch(n_samples: int, steps_per_epoch: int, batch_size: int) -> None:
    """Refuse a training set that gives no full batch (an epoch of no step would never end the loop)."""
    if steps_per_epoch == 0:
        raise ValueError(f"{n_samples} training samples cannot fill one batch of {batch_size}")


@torch.inference_mode()
def _validate(model: nn.Module, batches: Iterable[dict], to_network: Callable[[dict], dict],
              input_key: str = "input") -> dict[str, float]:
    """maxF and MAE of maps[0] on a whole (non-augmented) data set at network size, scored batch by
    batch on the model's device (one batch of maps in memory at a time)."""
    was_training = model.training
    model.eval()
    scores = RunningScores()
    for batch in batches:
        tensors = to_network(batch)
        maps, _ = model(tensors[input_key].contiguous(memory_format=torch.channels_last))
        scores.update(maps[0], tensors["gt"])
    model.train(was_training)
    return scores.result()


# ----------------------------------------------------------------------------- data
class TrainingBatches(Sampler):
    """A run's batches as a DataLoader ``batch_sampler``, resumable at any iteration: iteration ``it`` is
    batch ``it % steps_per_epoch`` of epoch ``it // steps_per_epoch``, and a batch is ``per_rank``
    keys ``(index, hflip, vflip)`` for :class:`dissam.data.datasets.TrainingItems`.

    ``epoch_order(e)`` gives this rank's sample order of epoch ``e``. Flips are drawn here, in the main
    process (:func:`dissam.data.datasets.draw_flips`): epoch ``e``'s are draws ``[e*m, (e+1)*m)`` (``m``
    samples an epoch) of a generator started from ``flip_state``, so they are a function of the
    iteration alone, whatever the number of workers or the iteration a run resumed at. Iterating yields
    the batches of iterations ``start`` (:meth:`resumable`) to ``horizon - 1``.
    """

    def __init__(self, epoch_order: Callable[[int], Sequence[int]], steps_per_epoch: int, per_rank: int,
                 augment: str | None, flip_state: torch.Tensor, horizon: int) -> None:
        self.epoch_order, self.steps_per_epoch, self.per_rank = epoch_order, steps_per_epoch, per_rank
        self.augment, self.flip_state, self.horizon = augment, flip_state, horizon
        self.start = 0
        self._flips = torch.Generator()
        self._flip_epoch = -1  # the epoch the generator's next draws belong to (-1: not started)

    def resumable(self, loader: DataLoader) -> Callable[[int], DataLoader]:
        """``it -> loader`` iterating from ``it`` on (``loader`` draws its batches from this sampler)."""
        def from_iteration(it: int) -> DataLoader:
            self.start = it
            return loader

        return from_iteration

    def __len__(self) -> int:
        return max(0, self.horizon - self.start)

    def _epoch_flips(self, epoch: int) -> list[tuple[bool, bool]]:
        m = self.steps_per_epoch * self.per_rank
        if not 0 <= self._flip_epoch <= epoch:
            self._flips.set_state(self.flip_state)
            self._flip_epoch = 0
        while self._flip_epoch < epoch:  # a resume: draw the earlier epochs' flips and drop them
            draw_flips(self.augment, m, self._flips)
            self._flip_epoch += 1
        self._flip_epoch += 1
        return draw_flips(self.augment, m, self._flips)

    def __iter__(self) -> Iterator[list[tuple[int, bool, bool]]]:
        it, n = self.start, self.per_rank
        while it < self.horizon:
            epoch, position = divmod(it, self.steps_per_epoch)
            order, flips = self.epoch_order(epoch), self._epoch_flips(epoch)
            for step in range(position, self.steps_per_epoch):
                if it >= self.horizon:
                    return
                yield [(order[j], *flips[j]) for j in range(step * n, (step + 1) * n)]
                it += 1


def distributed_order(n_samples: int, world: World, seed: int) -> Callable[[int], list[int]]:
    """This rank's sample order of an epoch: DistributedSampler's shuffle of ``(seed, epoch)`` split over
    the ranks (a pure function of the epoch, so a resume needs no sampler state)."""
    sampler = DistributedSampler(range(n_samples), num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=seed, drop_last=True)

    def order(epoch: int) -> list[int]:
        sampler.set_epoch(epoch)
        return list(sampler)

    return order


class ShuffledEpochs:
    """The sample orders that ``DataLoader(shuffle=True, drop_last=True, generator=Generator().manual_seed(
    seed))`` gives epoch after epoch (a RandomSampler drawing from one generator, which the DataLoader
    also draws its workers' base seed from at each epoch's start): phase 1's order, kept as it was."""

    def __init__(self, n_samples: int, batch_size: int, seed: int) -> None:
        self.n_samples, self.batch_size, self.seed = n_samples, batch_size, seed
        self._restart()

    def _restart(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)
        self._batches = BatchSampler(RandomSampler(range(self.n_samples), generator=self._generator),
                                     self.batch_size, drop_last=True)
        self._next_epoch = 0

    def __call__(self, epoch: int) -> list[int]:
        if epoch < self._next_epoch:
            self._restart()
        while True:
            torch.empty((), dtype=torch.int64).random_(generator=self._generator)  # the DataLoader's base seed
            order = [i for batch in self._batches for i in batch]
            self._next_epoch += 1
            if self._next_epoch > epoch:
                return order


def _loader(items: TrainingItems, batch_sampler: Iterable, num_workers: int, device: torch.device) -> DataLoader:
    """One DataLoader for a whole run: ``num_workers`` persistent workers (started once, not at every
    epoch or validation), 4 batches prefetched per worker, pinned memory on CUDA. Its generator is
    private: the global RNG is not drawn from (the workers draw nothing random; flips come as keys)."""
    workers = dict(persistent_workers=True, prefetch_factor=4) if num_workers > 0 else {}
    return DataLoader(items, batch_sampler=batch_sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator(), **workers)


def _validation_loader(dataset: RefinerDataset, batch_size: int, num_workers: int,
                       device: torch.device) -> DataLoader:
    """The validation set, unflipped and in order, in batches of ``batch_size``, through its own workers."""
    keys = [(i, False, False) for i in range(len(dataset))]
    batches = [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)]
    return _loader(TrainingItems(dataset), batches, num_workers, device)


# ----------------------------------------------------------------------------- phase 1: GT encoder
@dataclass
class GTEncoderObjective:
    """Phase 1: reproduce the GT from the GT alone (the variant's loss on the six side outputs, plus its
    ORTHO term when the variant penalises the encoder too)."""

    encoder: nn.Module
    variant: Variant
    device: torch.device

    def forward(self, batch: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
        gt = batch["gt"].to(self.device)
        maps, _ = self.encoder(gt)
        return maps, gt

    def loss(self, outputs, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        maps, gt = outputs
        loss = losses.gt_encoder_loss(maps, gt, self.variant.gt_encoder_loss)
        if self.variant.ortho_gt_encoder and self.variant.ortho_weight:
            loss = loss + self.variant.ortho_weight * losses.ortho_penalty(self.encoder, self.variant.ortho)
        return loss, {"total": loss.item()}


def _gt_encoder_loop(profile: Profile, world: World, device: torch.device) -> Loop:
    """Phase 1 as a :class:`Loop`: GT-only data (3-channel samples, no box or mask), the variant's rate
    throughout, one shuffled DataLoader over the epochs, no resume; the weights written once, at the end."""
    cfg, variant = profile.train, profile.variant
    seed_everything(cfg.seed)
    gt_only = dict(use_box=False, use_mask=False, in_ch=3)
    train_ds = refiner_dataset(profile, TRAIN_SPLIT, train=True, enrich=cfg.enrich, **gt_only)
    val_ds = refiner_dataset(profile, VAL_SPLIT, **gt_only)
    encoder = build_gt_encoder(width=cfg.width).to(device)
    peak = profile.gt_encoder_lr
    optimizer = make_optimizer(encoder.parameters(), variant, peak, cfg.weight_decay, device)
    steps = len(train_ds) // cfg.batch_size
    _fills_a_batch(len(train_ds), steps, cfg.batch_size)
    # Flips continue the global RNG's stream from here (the draws the data set made itself before).
    batches = TrainingBatches(ShuffledEpochs(len(train_ds), cfg.batch_size, cfg.seed), steps, cfg.batch_size,
                              train_ds.augment, torch.get_rng_state(), cfg.gt_encoder_iters)
    items = TrainingItems(train_ds)
    loader = _loader(items, batches, cfg.num_workers, device)
    checkpoints = Checkpoints(save_gt_encoder, lambda run: dict(iterations=run.it, val=run.score),
                              final=profile.gt_encoder_checkpoint)
    return Loop(name="GT encoder", desc="GT encoder", what="GT-encoder training", model=encoder,
                objective=GTEncoderObjective(encoder, variant, device), optimizer=optimizer,
                lr=lambda it: peak, batches=batches.resumable(loader),
                to_network=lambda batch: items.to_network(batch, device),
                val_batches=_validation_loader(val_ds, cfg.batch_size, cfg.num_workers, device), input_key="gt",
                horizon=cfg.gt_encoder_iters, val_every=cfg.gt_encoder_val_every or cfg.val_every,
                checkpoints=checkpoints, world=world, device=device,
                time_limit_minutes=cfg.time_limit_minutes, target_maxf=cfg.gt_encoder_target_maxf)


def train_gt_encoder(profile: Profile, progress: bool = True, force: bool = False) -> Path:
    """Fit the GT encoder to reproduce GT masks (the variant's loss on its six side outputs, optimiser and
    rate) until its maxF on the validation GTs exceeds the target or the iteration cap is reached.
    Validated every ``gt_encoder_val_every`` iterations (else ``val_every``); returns its checkpoint."""
    path = profile.gt_encoder_checkpoint
    if path.exists() and not force:
        return path
    numerics.apply(profile.numerics)  # portable: dissam.numerics
    world = init_world(profile.device)
    _run_loop(_gt_encoder_loop(profile, world, profile.torch_device(world.local_rank)), progress=progress)
    return path


# ----------------------------------------------------------------------------- phase 2: refiner
def _load_frozen_gt_encoder(profile: Profile, device: torch.device) -> nn.Module:
    """The GT encoder with frozen weights. Its BatchNorms use batch statistics (train mode) as in both
    references, unless the variant asks for running statistics (``gt_encoder_bn="running"``)."""
    encoder = load_gt_encoder(train_gt_encoder(profile)).to(device)
    encoder.train(profile.variant.gt_encoder_bn == "batch")
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder


@dataclass
class RefinerObjective:
    """Phase 2: the DIS-SAM loss (paper eq. 3) of the refiner's side maps against the soft GT, with the
    frozen GT encoder's features as the feature target (when there is one)."""

    model: nn.Module
    gt_encoder: nn.Module | None
    profile: Profile
    device: torch.device

    def forward(self, batch: dict) -> tuple:
        x = batch["input"].to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        gt = batch["gt"].to(self.device, non_blocking=True)
        maps, features = self.model(x)
        gt_features = None
        if self.gt_encoder is not None:
            with torch.no_grad():
                _, gt_features = self.gt_encoder(gt)
        return maps, features, gt_features, gt

    def loss(self, outputs, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        maps, features, gt_features, gt = outputs
        cfg, variant = self.profile.train, self.profile.variant
        return losses.dis_sam_loss(
            [m.float() for m in maps], gt,
            features=[f.float() for f in features] if gt_features is not None else None,
            gt_features=[f.float() for f in gt_features] if gt_features is not None else None,
            model=_unwrap(self.model), w_bce=cfg.w_bce, w_iou=cfg.w_iou, w_feature=cfg.w_feature,
            w_ortho=variant.ortho_weight, ortho=variant.ortho)


def build_run_datasets(profile: Profile, spec: RunSpec):
    """The run's training set (enriched or not) and the validation set, with the spec's input switches."""
    inputs = dict(use_box=spec.use_box, use_mask=spec.use_mask, in_ch=spec.in_ch)
    return (refiner_dataset(profile, TRAIN_SPLIT, train=True, enrich=spec.enrich, **inputs),
            refiner_dataset(profile, VAL_SPLIT, **inputs))


def _refiner_meta(profile: Profile, spec: RunSpec) -> Callable[[Loop], dict[str, Any]]:
    """What a refiner checkpoint stores beside its weights: progress, history, profile, variant, stage 1, config."""
    cfg = profile.train
    config = {**asdict(cfg), **asdict(spec), "size": cfg.size, "horizon": spec.horizon(profile),
              "lr": profile.refiner_lr}
    stage1 = stage1_spec(profile)  # the stage 1 it was trained with: DisSam.from_checkpoint rebuilds it
    return lambda run: dict(iteration=run.it, seconds=run.seconds, best=run.best, history=run.history,
                            profile=profile.name, variant=asdict(profile.variant), stage1=stage1,
                            train_config=config)


def _folded_start(profile: Profile, model: nn.Module, world: World) -> bool:
    """Whether the refiner starts from a published IS-Net whose BatchNorms were folded into its convolutions
    (the conversion ``dissam weights isnet`` writes). Its BatchNorms must keep their loaded statistics: in
    train mode, batch statistics would rescale every activation of the published network. Said once."""
    if profile.variant.refiner_init != "isnet" or not has_identity_batchnorms(model):
        return False
    if world.is_main:
        print(f"{profile.baselines.isnet_checkpoint}: BatchNorms folded into the convolutions; they stay "
              "frozen while the refiner fine-tunes (the DIS release's isnet.pth trains them as IS-Net does)")
    return True


def _refiner_loop(profile: Profile, spec: RunSpec, world: World, device: torch.device, datasets,
                  state: dict[str, Any] | None) -> Loop:
    """Phase 2 as a :class:`Loop`: the same initial weights on every rank, augmentation seeded per rank,
    resumed from ``state`` when given, wrapped in DDP (with SyncBatchNorm) when distributed."""
    cfg, horizon = profile.train, spec.horizon(profile)
    train_ds, val_ds = datasets or build_run_datasets(profile, spec)
    seed_everything(cfg.seed)  # the same initial weights on every rank
    prior = cfg.coarse_prior if spec.use_mask else 0.0  # no mask channel, no prior
    model = initial_refiner(profile.variant.refiner_init, spec.in_ch, cfg.width, prior,  # scratch or published IS-Net
                            profile.baselines.isnet_checkpoint)
    if cfg.zero_side_outputs:
        zero_side_outputs(model)
    freeze_bn = cfg.freeze_batchnorm or _folded_start(profile, model, world)
    params = freeze_for_finetuning(model, cfg.trainable, freeze_bn)
    model = model.to(device).to(memory_format=torch.channels_last)
    gt_encoder = _load_frozen_gt_encoder(profile, device) if cfg.use_gt_encoder else None
    if gt_encoder is not None and gt_encoder.training and world.distributed:
        gt_encoder = sync_batchnorm(gt_encoder, device)  # batch statistics of the global batch, as on one device
    optimizer = make_optimizer(params, profile.variant, profile.refiner_lr, cfg.weight_decay, device)
    seed_everything(cfg.seed + world.rank)
    checkpoints = Checkpoints(save_refiner, _refiner_meta(profile, spec),
                              best=spec.checkpoint(profile), last=spec.last_checkpoint(profile))
    progress = _resume(model, optimizer, state, world, device)
    if world.distributed:
        # Frozen BatchNorms use their loaded statistics: nothing to synchronise across processes.
        model = nn.parallel.DistributedDataParallel(model if freeze_bn else sync_batchnorm(model, device))
    model.train()
    per_rank, order = cfg.batch_size // world.size, distributed_order(len(train_ds), world, cfg.seed)
    steps = len(order(0)) // per_rank
    _fills_a_batch(len(train_ds), steps, cfg.batch_size)
    flips = torch.Generator().manual_seed(cfg.seed + world.rank).get_state()  # augmentation differs per rank
    batches = TrainingBatches(order, steps, per_rank, train_ds.augment, flips, horizon)
    items = TrainingItems(train_ds)
    loader = _loader(items, batches, cfg.num_workers, device)
    return Loop(name=spec.name, desc=f"refiner {spec.name}", what=f"refiner run {spec.name!r}", model=model,
                objective=RefinerObjective(model, gt_encoder, profile, device), optimizer=optimizer,
                lr=lambda it: lr_at(it, cfg, horizon, profile.refiner_lr),
                batches=batches.resumable(loader),
                to_network=lambda batch: items.to_network(batch, device),
                val_batches=_validation_loader(val_ds, cfg.batch_size, cfg.num_workers, device) if world.is_main else (),
                input_key="input", horizon=horizon, val_every=cfg.val_every,
                checkpoints=checkpoints, world=world, device=device,
                time_limit_minutes=cfg.time_limit_minutes, bf16=device.type == "cuda" and cfg.autocast == "bf16",
                **progress)


def _finished(profile: Profile, spec: RunSpec, state: dict[str, Any]) -> bool:
    return state["iteration"] >= spec.horizon(profile) and spec.checkpoint(profile).exists()


def run_finished(profile: Profile, spec: RunSpec) -> bool:
    """Whether the run's last checkpoint already reached its budget (training it would return at once)."""
    last = spec.last_checkpoint(profile)
    return last.exists() and _finished(profile, spec, load_checkpoint(last, map_location="cpu"))


def train_refiner(profile: Profile, spec: RunSpec | None = None, resume: bool = True, progress: bool = True,
                  stop_after: int | None = None, datasets=None) -> TrainResult:
    """Train (or resume) one refiner run; returns where its best and last checkpoints are.

    A run whose last checkpoint already reached its budget returns at once (nothing is rebuilt,
    restored or trained). ``stop_after`` ends this call after that many iterations without changing
    the schedule (an interruption, for tests); the next call with ``resume=True`` continues exactly.
    """
    spec = spec or RunSpec()
    best_path, last_path = spec.checkpoint(profile), spec.last_checkpoint(profile)
    numerics.apply(profile.numerics)  # before torch computes anything here (portable: dissam.numerics)
    # Read once, onto the CPU whatever the device: load_state_dict copies weights and optimiser state to
    # the parameters' device, and RNG states must stay CPU tensors.
    state = load_checkpoint(last_path, map_location="cpu") if resume and last_path.exists() else None
    if state is not None and _finished(profile, spec, state):
        return TrainResult(best_path, last_path, state["iteration"], state["seconds"], state["best"], state["history"])
    world = init_world(profile.device)
    if profile.train.batch_size % world.size:
        raise ValueError(f"batch size {profile.train.batch_size} does not split over {world.size} processes")
    run = _refiner_loop(profile, spec, world, profile.torch_device(world.local_rank), datasets, state)
    _run_loop(run, progress=progress, stop_after=stop_after)
    return TrainResult(best_path, last_path, run.it, run.seconds, run.best, run.history)
