"""Run profiles as plain dataclasses: ``tiny`` (tests), ``smoke`` (CPU reproduction), ``paper`` (GPU, DIS5K).

One code path serves all three; a profile only changes sizes, budgets and where data comes from.
The fields of :class:`Variant` are the places where the DIS-SAM paper and the authors' released code
differ (README, "Paper vs authors' code"); ``Variant.paper()`` is the default.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .data.splits import ZERO_SHOT_SETS

PROFILES = ("tiny", "smoke", "paper")
ProfileName = Literal["tiny", "smoke", "paper"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_ROOT = REPO_ROOT / "runs"  # $DISSAM_RUNS, read when a profile's folders are asked for, overrides it
FIGURES_ROOT = Path(os.environ.get("DISSAM_FIGURES", REPO_ROOT / "figures"))


@dataclass
class Variant:
    """Each field is one row of the paper-vs-code table; values name what they change."""

    sam_model_type: str = "vit_b"  # code: "vit_l"
    sam_multimask: bool = False  # code: True, and masks[0] is taken
    optimizer: Literal["adam", "adamw"] = "adam"  # code: "adamw" (weight decay 0), for both networks
    lr: float = 1e-5  # code: 4e-5
    gt_encoder_lr: float = 1e-3  # IS-Net trains its GT encoder with Adam 1e-3; code: AdamW 1e-4
    gt_encoder_loss: Literal["bce", "bce_iou"] = "bce"  # IS-Net: BCE; code: 20 BCE + 0.5 IoU
    gt_encoder_bn: Literal["batch", "running"] = "batch"  # both references: frozen encoder in train mode
    augment: Literal["hflip", "hvflip", "none"] = "hflip"  # code: 25% h, 25% v, 25% both
    ortho: Literal["frobenius", "l1"] = "frobenius"  # code: elementwise L1 over every non-bias weight
    ortho_weight: float = 1e-6  # code: 1e-8
    ortho_gt_encoder: bool = False  # code: the GT encoder is penalised too
    # "filtered": components < 0.4% of the image dropped, the whole mask kept too when > 1 survive (the
    # authors' rule; it gives the paper's 3,000 -> 3,880 DIS-TR count). "components": every component.
    enrichment: Literal["filtered", "components"] = "filtered"
    inference_box: Literal["user", "sam_tight"] = "user"  # code: tight box of the SAM mask
    final_mask: Literal["threshold", "otsu"] = "threshold"  # code: min-max normalise + Otsu
    # The refiner's initial weights. Paper: "isnet", it fine-tunes the published 3-channel IS-Net (RGB
    # filters copied, mask and box filters zero; dissam.model.init), at Adam 1e-5. Code: "scratch" (at
    # AdamW 4e-5). The default is "scratch" because published weights exist only at width 1.0: the CPU
    # profiles (width 0.25, 0.125) cannot start from them. The paper profile sets "isnet"; see _paper.
    refiner_init: Literal["scratch", "isnet"] = "scratch"

    @classmethod
    def paper(cls) -> "Variant":
        return cls()

    @classmethod
    def authors_code(cls) -> "Variant":
        return cls(sam_model_type="vit_l", sam_multimask=True, optimizer="adamw", lr=4e-5,
                   gt_encoder_lr=1e-4, gt_encoder_loss="bce_iou", augment="hvflip", ortho="l1",
                   ortho_weight=1e-8, ortho_gt_encoder=True, enrichment="filtered",
                   inference_box="sam_tight", final_mask="otsu", refiner_init="scratch")


@dataclass
class DataConfig:
    """Where images come from. ``root=None`` means: generate procedural data under the run folder."""

    root: Path | None = None
    size: int = 192  # procedural scenes are rendered at this size (the working resolution)
    n_train: int = 400
    n_val: int = 40
    n_test: int = 40  # per DIS-TE1..TE4 split
    n_zero_shot: int = 40  # per shifted family
    seed: int = 0
    # Data sets of the zero-shot table (Table II); procedural data names its shifted families alike.
    zero_shot_sets: tuple[str, ...] = ZERO_SHOT_SETS
    # HQSeg-44K in HQ-SAM's layout (dissam.data.hqseg): when given, the DIS-SAM† run (trained on it) is
    # trained and fills its Table I / II rows; None: those rows are the paper's only.
    hqseg_root: Path | None = None


@dataclass
class CoarseConfig:
    """Stage 1. ``kind='grabcut'`` needs no weights and is the offline default."""

    kind: Literal["grabcut", "sam", "hq-sam"] = "grabcut"
    checkpoint: Path | None = None
    grabcut_iters: int = 3


@dataclass
class TrainConfig:
    """Stage 2 training. Budgets are iteration counts, so a run gives the same model on every machine;
    ``time_limit_minutes`` is only a guard that stops a run loudly (an error), never silently."""

    size: int = 192  # network input size
    width: float = 0.25  # channel multiplier; 1.0 = official IS-Net
    batch_size: int = 8
    max_iters: int = 1200  # the smoke profile trains 800 (~0.45 s each at 192 px, width 0.25, batch 8, 2 cores)
    time_limit_minutes: float | None = None
    autocast: Literal["none", "bf16"] = "none"  # both references train in fp32; bf16 (CUDA) is an opt-in
    lr: float | None = 2e-3  # peak; None: the variant's (the paper's 1e-5 is a fine-tuning rate, far too low from scratch)
    warmup_frac: float = 0.05
    schedule: Literal["constant", "cosine"] = "cosine"
    weight_decay: float = 0.0
    val_every: int = 100
    num_workers: int = 0
    seed: int = 0
    use_box: bool = True
    use_mask: bool = True
    enrich: bool = True
    # Loss weights (paper eq. 3): 20*BCE + 0.5*IoU + 1*feature MSE + 1e-6*ORTHO (ORTHO weight in Variant).
    w_bce: float = 20.0
    w_iou: float = 0.5
    w_feature: float = 1.0
    use_gt_encoder: bool = True
    # 0: the paper's refiner. k > 0: side logits start from stage 1's mask, k * (2 * mask - 1), and the
    # network learns corrections (runs without the mask channel train without it). A short-budget aid
    # of the CPU profiles; see README, "The smoke recipe".
    coarse_prior: float = 0.0
    # GT encoder phase: stop when its maxF exceeds the target or the cap is reached; validated every
    # ``gt_encoder_val_every`` iterations (None: the refiner's ``val_every``).
    gt_encoder_iters: int = 250
    gt_encoder_target_maxf: float = 0.99
    gt_encoder_lr: float | None = None  # None: the variant's
    gt_encoder_val_every: int | None = 50


@dataclass
class AblationConfig:
    """Table III runs: shorter budgets than the main model (each table states its budget). Every row is
    trained once per seed (seed 0 is the profile's own); the table gives the mean over seeds and its
    caption the spread, so that an order between two rows is only claimed where the gap exceeds it."""

    max_iters: int = 240
    batch_size: int | None = None  # None: the main run's
    # True: every row trains on the main run's budget and batch (max_iters and batch_size ignored), so the
    # last row (box + mask + enrichment) is the main run itself, as in the paper's Table III. False (the
    # default, and every shipped profile): the shorter ablation budget, stated in the table's caption.
    main_budget: bool = False
    seeds: tuple[int, ...] = (0,)
    # On the CPU each run trains in a process of its own with one thread, this many at once (None: the
    # CPU count, at most 8). A run's numbers do not depend on it; see runs.train_runs.
    workers: int | None = None


@dataclass
class BaselineConfig:
    """Published models evaluated beside ours when their weights are given (Tables I and II):
    the official 3-channel IS-Net (``isnet.pth``) and HQ-SAM as a stage-1 baseline."""

    isnet_checkpoint: Path | None = None
    hq_sam_checkpoint: Path | None = None


@dataclass
class Profile:
    name: ProfileName
    data: DataConfig = field(default_factory=DataConfig)
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    variant: Variant = field(default_factory=Variant.paper)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    device: str = "cpu"
    tag: str = ""  # a variant of the profile (e.g. "dryrun") runs in its own folder
    # CPU numerics (dissam.numerics): "native" (fastest kernels; the bits differ between CPUs) or "portable"
    # (the same bits on every x86-64 CPU with AVX2, slower). get_profile reads $DISSAM_NUMERICS; a portable
    # profile runs in its own folder (tag "portable"), never mixing its checkpoints with native ones.
    numerics: Literal["native", "portable"] = "native"

    @property
    def refiner_lr(self) -> float:
        """The refiner's peak learning rate: the profile's own, else the variant's."""
        return self.train.lr if self.train.lr is not None else self.variant.lr

    @property
    def gt_encoder_lr(self) -> float:
        """The GT encoder's learning rate: the profile's own, else the variant's."""
        return self.train.gt_encoder_lr if self.train.gt_encoder_lr is not None else self.variant.gt_encoder_lr

    @property
    def run_dir(self) -> Path:
        root = Path(os.environ["DISSAM_RUNS"]) if os.environ.get("DISSAM_RUNS") else RUNS_ROOT
        return root / (f"{self.name}-{self.tag}" if self.tag else self.name)

    @property
    def data_root(self) -> Path:
        return Path(self.data.root) if self.data.root is not None else self.run_dir / "data"

    @property
    def cache_dir(self) -> Path:
        return self.run_dir / "coarse_cache"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def refiner_checkpoint(self) -> Path:
        """The main model's best checkpoint: what evaluation, the widget and ``dissam predict`` use."""
        return self.checkpoint_dir / "dissam_refiner.pt"

    @property
    def gt_encoder_checkpoint(self) -> Path:
        return self.checkpoint_dir / "gt_encoder.pt"

    @property
    def figures_dir(self) -> Path:
        """Committed results live in figures/<profile>/; tiny and tagged runs keep theirs in the run folder."""
        if self.name == "tiny" or self.tag:
            return self.run_dir / "figures"
        return FIGURES_ROOT / self.name

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _tiny() -> Profile:
    return Profile(
        name="tiny",
        data=DataConfig(size=64, n_train=12, n_val=4, n_test=3, n_zero_shot=3, seed=0),
        coarse=CoarseConfig(grabcut_iters=1),
        train=TrainConfig(size=64, width=0.125, batch_size=4, max_iters=4, val_every=2,
                          gt_encoder_iters=3, gt_encoder_val_every=2, lr=1e-3),
        ablation=AblationConfig(max_iters=2, seeds=(0, 1), workers=1),  # tiny runs: no worker start-up
    )


def _smoke() -> Profile:
    # Budgets (README, "The smoke recipe"): 800 main iterations and 5 rows x 3 seeds x 100 ablation
    # iterations at batch 4; the notebook series took 16.3 minutes on a 2-core Intel Xeon.
    return Profile(name="smoke", train=TrainConfig(max_iters=800, coarse_prior=4.0),
                   ablation=AblationConfig(max_iters=100, batch_size=4, seeds=(0, 1, 2)))


def _paper() -> Profile:
    return Profile(
        name="paper",
        data=DataConfig(root=Path(os.environ.get("DISSAM_DIS5K", REPO_ROOT / "data" / "DIS5K")), size=1024,
                        hqseg_root=Path(os.environ["DISSAM_HQSEG"]) if os.environ.get("DISSAM_HQSEG") else None),
        coarse=CoarseConfig(kind="sam", checkpoint=Path(os.environ.get(
            "DISSAM_SAM_CHECKPOINT", REPO_ROOT / "checkpoints" / "sam_vit_b_01ec64.pth"))),
        # lr and gt_encoder_lr None: read from the variant when training starts, so swapping the
        # variant swaps the rates. Validation every 2,000 iterations, as IS-Net's training script.
        train=TrainConfig(size=1024, width=1.0, batch_size=6, max_iters=100_000, lr=None,
                          warmup_frac=0.0, schedule="constant", val_every=2000, num_workers=8,
                          gt_encoder_iters=20_000, gt_encoder_val_every=None),
        # The ablation runs get their own budget (the box+mask+enrichment row at the main budget is the
        # main run itself, and is reused, never trained twice).
        ablation=AblationConfig(max_iters=20_000),
        # The paper fine-tunes IS-Net at Adam 1e-5 (lr=None reads the variant's 1e-5). From scratch that
        # rate is far too low (the authors' code trains from scratch at 4e-5), so the paper profile
        # starts from the published isnet.pth, as the paper says; without it training stops with a
        # one-line error saying where to get it. `dissam check --pilot` compares scratch@1e-5,
        # scratch@4e-5 and isnet@1e-5 on DIS-VD to confirm the choice on the first GPU day.
        variant=replace(Variant.paper(), refiner_init="isnet"),
        baselines=BaselineConfig(isnet_checkpoint=Path(os.environ["DISSAM_ISNET_CHECKPOINT"])
                                 if os.environ.get("DISSAM_ISNET_CHECKPOINT") else None),
        device="cuda",
    )


_BUILDERS = {"tiny": _tiny, "smoke": _smoke, "paper": _paper}


def get_profile(name: str | None = None, **overrides: Any) -> Profile:
    """Build a profile by name (default: ``$DISSAM_PROFILE``, else ``smoke``); overrides replace top-level fields.
    ``$DISSAM_NUMERICS=portable`` gives the profile portable numerics and the tag "portable" (unless
    ``numerics`` or ``tag`` is among the overrides)."""
    from .numerics import requested_mode

    name = name or os.environ.get("DISSAM_PROFILE") or "smoke"
    if name not in _BUILDERS:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = _BUILDERS[name]()
    if requested_mode() == "portable":
        profile = replace(profile, numerics="portable", tag="portable")
    return replace(profile, **overrides)


def dry_run(profile: Profile) -> Profile:
    """The paper profile's code path, made CPU-sized: every model and stage is built at full width,
    trained two iterations at 64 px, in a separate run folder."""
    train = replace(profile.train, size=64, batch_size=2, max_iters=2, val_every=2,
                    gt_encoder_iters=2, gt_encoder_val_every=2, num_workers=0)
    variant = profile.variant
    if variant.refiner_init == "isnet" and profile.baselines.isnet_checkpoint is None:
        variant = replace(variant, refiner_init="scratch")  # a dry run needs no download; given, it is used
    tag = "dryrun" if profile.numerics == "native" else f"dryrun-{profile.numerics}"
    return replace(profile, train=train, ablation=AblationConfig(max_iters=2, workers=1), variant=variant,
                   device="cpu", tag=tag)


def _matplotlib_inline() -> None:
    """``%matplotlib inline`` when running under IPython (returned figures then show as images)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")


def notebook_profile(name: str | None = None, data_dir: str | Path | None = None,
                     sam_checkpoint: str | Path | None = None, sam_model_type: str | None = None,
                     dry: bool = False, isnet_checkpoint: str | Path | None = None,
                     hq_sam_checkpoint: str | Path | None = None) -> Profile:
    """A notebook's setup in one call: figures drawn inline, the profile its parameters cell describes,
    its figures folder made, one line saying where data, runs and figures go, and portable numerics put
    in force when the profile has them (with a second line saying so)."""
    _matplotlib_inline()
    profile = profile_from_params(name, data_dir, sam_checkpoint, sam_model_type, dry, isnet_checkpoint,
                                  hq_sam_checkpoint)
    profile.figures_dir.mkdir(parents=True, exist_ok=True)
    print(f"profile {profile.name}: data {profile.data_root}, runs {profile.run_dir}, figures {profile.figures_dir}")
    if profile.numerics != "native":  # before the notebook computes anything (dissam.numerics)
        from .numerics import apply, describe

        apply(profile.numerics)
        print(describe())
    return profile


def profile_from_params(name: str | None = None, data_dir: str | Path | None = None,
                        sam_checkpoint: str | Path | None = None, sam_model_type: str | None = None,
                        dry: bool = False, isnet_checkpoint: str | Path | None = None,
                        hq_sam_checkpoint: str | Path | None = None) -> Profile:
    """The profile a notebook's parameters cell describes (papermill injects these)."""
    profile = get_profile(name)
    profile.baselines = BaselineConfig(  # given files replace the profile's own (e.g. $DISSAM_ISNET_CHECKPOINT)
        Path(isnet_checkpoint) if isnet_checkpoint else profile.baselines.isnet_checkpoint,
        Path(hq_sam_checkpoint) if hq_sam_checkpoint else profile.baselines.hq_sam_checkpoint)
    if data_dir:
        profile.data.root = Path(data_dir)
    if sam_checkpoint:
        profile.coarse = replace(profile.coarse, kind="sam", checkpoint=Path(sam_checkpoint))
    if sam_model_type:
        profile.variant = replace(profile.variant, sam_model_type=sam_model_type)
    return dry_run(profile) if dry else profile
