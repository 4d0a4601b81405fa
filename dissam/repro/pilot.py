"""``dissam check --pilot``: settle the refiner's initialisation and rate on the first GPU day.

The paper fine-tunes IS-Net at Adam 1e-5; the authors' code trains from scratch at 4e-5; the paper
profile chooses ``refiner_init="isnet"`` at 1e-5 (dissam.repro.config, ``_paper``). The pilot trains three
arms side by side on the profile's data (DIS5K on the paper profile), each for a few thousand
iterations from the same stage-1 cache and GT encoder, and reports each arm's best DIS-VD maxF (the
training loop's validation, the score that selects checkpoints):

    scratch@1e-5   from scratch at the paper's rate (what the paper profile did before the choice)
    scratch@4e-5   from scratch at the authors' rate
    isnet@1e-5     the published IS-Net fine-tuned at the paper's rate (the paper profile's choice)

The result is printed and written as JSON (``pilot.json``). On the CPU the same command runs end to
end on a tiny DIS5K-layout folder at 64 px (tests/test_pilot.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..data.splits import TRAIN_SPLIT, VAL_SPLIT
from ..model.init import isnet_init_checkpoint
from . import stages
from .config import BaselineConfig, Profile, get_profile, runs_root
from .train import RunSpec, train_gt_encoder, train_refiner

PILOT_ITERS = 3000  # per arm: a few thousand iterations, enough to order the three arms
PILOT_JSON = "pilot.json"


@dataclass(frozen=True)
class PilotArm:
    """One arm of the pilot: the refiner's initial weights and its peak learning rate."""

    refiner_init: str
    lr: float

    @property
    def name(self) -> str:
        return f"{self.refiner_init}@{self.lr:g}"

    @property
    def run(self) -> str:
        """The run (checkpoint) name, safe in a file name."""
        return f"pilot_{self.refiner_init}_lr{self.lr:g}"


PILOT_ARMS = (PilotArm("scratch", 1e-5), PilotArm("scratch", 4e-5), PilotArm("isnet", 1e-5))


def arm_profile(base: Profile, arm: PilotArm, iters: int) -> Profile:
    """``base`` with the arm's initialisation and rate, trained ``iters`` iterations (validated at least
    once, at the end); everything else (data, stage 1, GT encoder, batch, schedule) is the profile's."""
    train = replace(base.train, lr=arm.lr, max_iters=iters, val_every=min(base.train.val_every, iters))
    return replace(base, train=train, variant=replace(base.variant, refiner_init=arm.refiner_init))


def run_pilot(base: Profile, iters: int = PILOT_ITERS, out: Path | None = None,
              arms: tuple[PilotArm, ...] = PILOT_ARMS, progress: bool = True) -> dict[str, Any]:
    """Train every arm on ``base``'s data (in ``base``'s run folder, tag ``pilot``) and return the report:
    each arm's best validation maxF and the iteration it was reached; written to ``out`` (default
    ``<run folder>/pilot.json``). The published IS-Net is required up front when an arm starts from it."""
    if iters < 1:
        raise ValueError(f"--pilot-iters must be >= 1, got {iters}")
    base = replace(base, tag=base.tag or "pilot")
    if any(arm.refiner_init == "isnet" for arm in arms):
        isnet_init_checkpoint(base.baselines.isnet_checkpoint)  # fail before hours of training, not after
    stages.prepare_data(base, progress=progress)
    stages.cache_stage1(base, [TRAIN_SPLIT, VAL_SPLIT], progress=progress)
    train_gt_encoder(base, progress=progress)
    results = {}
    for arm in arms:
        result = train_refiner(arm_profile(base, arm, iters), RunSpec(name=arm.run), progress=progress)
        results[arm.name] = {"refiner_init": arm.refiner_init, "lr": arm.lr, "iterations": result.iterations,
                             "val_maxF": result.best["maxF"], "best_iteration": result.best.get("iteration"),
                             "seconds": result.seconds, "checkpoint": str(result.checkpoint)}
    report = {"profile": base.name, "data": str(base.data_root), "iterations_per_arm": iters,
              "validation": "DIS-VD maxF of the training loop's validation (best over the run)",
              "arms": results, "best_arm": max(results, key=lambda k: results[k]["val_maxF"])}
    path = Path(out) if out is not None else base.run_dir / PILOT_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return report


def add_pilot_arguments(parser: argparse.ArgumentParser) -> None:
    """The pilot's options of ``dissam check``."""
    parser.add_argument("--pilot", action="store_true",
                        help="instead of the check: train scratch@1e-5, scratch@4e-5 and isnet@1e-5 on the "
                             "profile's data and report each one's DIS-VD maxF (dissam.repro.pilot)")
    parser.add_argument("--pilot-iters", type=int, default=PILOT_ITERS,
                        help=f"iterations per pilot arm (default {PILOT_ITERS})")
    parser.add_argument("--pilot-data", type=Path, help="DIS5K root for the pilot (default: the profile's)")
    parser.add_argument("--pilot-isnet", type=Path, help="the published isnet.pth the isnet arm starts from")
    parser.add_argument("--pilot-sam-checkpoint", type=Path, help="SAM weights (default: the profile's)")


def pilot_base_profile(args: argparse.Namespace) -> Profile:
    """The profile the pilot trains on, from ``dissam check``'s arguments."""
    profile = get_profile(getattr(args, "profile", None) or "paper")
    if args.pilot_data:
        profile.data.root = Path(args.pilot_data)
    if args.pilot_sam_checkpoint:
        profile.coarse = replace(profile.coarse, kind="sam", checkpoint=Path(args.pilot_sam_checkpoint))
    if args.pilot_isnet:
        profile.baselines = BaselineConfig(Path(args.pilot_isnet), profile.baselines.hq_sam_checkpoint)
    if getattr(args, "device", None):
        profile = replace(profile, device=args.device)
    return profile


def run_pilot_from_args(args: argparse.Namespace) -> int:
    """``dissam check --pilot``: run the pilot, print its JSON report; 0 on success."""
    out = Path(args.out) if getattr(args, "out", None) else None
    context = runs_root(out.resolve() / "runs") if out is not None else contextlib.nullcontext()
    with context:
        report = run_pilot(pilot_base_profile(args), iters=args.pilot_iters,
                           out=out / PILOT_JSON if out is not None else None)
    print(json.dumps(report, indent=2))
    return 0
