"""Run profiles as plain dataclasses: ``tiny`` (tests), ``smoke`` (CPU reproduction), ``paper`` (GPU, DIS5K).

One code path serves all three; a profile only changes sizes, budgets and where data comes from.
A profile's ``variant`` (:class:`dissam.variant.Variant`) says where it follows the paper or the
authors' released code.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..data.splits import ZERO_SHOT_SETS
from ..numerics import apply as apply_numerics
from ..numerics import describe as describe_numerics
from ..numerics import requested_mode
from ..variant import Variant

if TYPE_CHECKING:
    import torch

PROFILES = ("tiny", "smoke", "paper", "photo")
ProfileName = Literal["tiny", "smoke", "paper", "photo"]

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS_ROOT = REPO_ROOT / "runs"  # $DISSAM_RUNS, read when a profile's folders are asked for, overrides it
FIGURES_ROOT = Path(os.environ.get("DISSAM_FIGURES", REPO_ROOT / "figures"))


@dataclass
class DataConfig:
    """Where images come from. ``root=None`` means: generate procedural data under the run folder (the
    CPU profiles); the paper profile's root is DIS5K. ``size`` and the counts apply to procedural data."""

    root: Path | None = None
    size: int = 1024  # procedural scenes are rendered at this size (the working resolution)
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
    """Stage 1: SAM from ``checkpoint`` (the paper), or ``kind='grabcut'``, which needs no weights (the CPU
    profiles)."""

    kind: Literal["grabcut", "sam", "hq-sam"] = "sam"
    checkpoint: Path | None = None
    grabcut_iters: int = 3


@dataclass
class TrainConfig:
    """Stage 2 training. Budgets are iteration counts, so a run gives the same model on every machine;
    ``time_limit_minutes`` is only a guard that stops a run loudly (an error), never silently."""

    size: int = 1024  # network input size
    width: float = 1.0  # channel multiplier; 1.0 = official IS-Net
    batch_size: int = 6
    max_iters: int = 100_000
    time_limit_minutes: float | None = None
    autocast: Literal["none", "bf16"] = "none"  # both references train in fp32; bf16 (CUDA) is an opt-in
    lr: float | None = None  # peak; None: the variant's (the paper's 1e-5 is a fine-tuning rate, far too low from scratch)
    warmup_frac: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = 0.0
    val_every: int = 2000  # as IS-Net's training script
    num_workers: int = 8
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
    # of the CPU profiles; see docs/smoke-recipe.md.
    coarse_prior: float = 0.0
    # GT encoder phase: stop when its maxF exceeds the target or the cap is reached; validated every
    # ``gt_encoder_val_every`` iterations (None: the refiner's ``val_every``).
    gt_encoder_iters: int = 20_000
    gt_encoder_target_maxf: float = 0.99
    gt_encoder_lr: float | None = None  # None: the variant's
    gt_encoder_val_every: int | None = None
    # Fine-tuning (refiner_init="isnet"): prefixes of the refiner parameters that train (None: all; see
    # dissam.model.init.freeze_for_finetuning) and whether BatchNorms keep their loaded statistics.
    trainable: tuple[str, ...] | None = None
    freeze_batchnorm: bool = False
    # True: the refiner's side outputs start at zero, so with a coarse prior it starts as its stage 1
    # (dissam.model.init.zero_side_outputs).
    zero_side_outputs: bool = False


@dataclass
class AblationConfig:
    """Table III runs: shorter budgets than the main model (each table states its budget). Every row is
    trained once per seed (seed 0 is the profile's own); the table gives the mean over seeds and its
    caption the spread, so that an order between two rows is only claimed where the gap exceeds it."""

    max_iters: int = 20_000  # the main run has 1e5 (see main_budget)
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
    the official 3-channel IS-Net (``isnet.pth``), HQ-SAM as a stage-1 baseline, and the general-use
    IS-Net zero-shot whenever its weights are found (``general_isnet_checkpoint``, else the conversion
    ``dissam weights isnet`` keeps in the user cache; :func:`dissam.repro.runs.general_isnet_weights`)."""

    isnet_checkpoint: Path | None = None
    hq_sam_checkpoint: Path | None = None
    general_isnet_checkpoint: Path | None = None
    general_isnet_size: int = 1024  # its input side: Inference.py's 1024 (the CPU profiles use less, see _cpu)


@dataclass
class Profile:
    name: ProfileName
    data: DataConfig = field(default_factory=DataConfig)
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    # The paper fine-tunes the published IS-Net (refiner_init="isnet"); see _paper.
    variant: Variant = field(default_factory=lambda: replace(Variant.paper(), refiner_init="isnet"))
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    device: str = "cuda"
    tag: str = ""  # a variant of the profile (e.g. "dryrun") runs in its own folder
    # CPU numerics (dissam.numerics): "native" (fastest kernels; the bits differ between CPUs) or "portable"
    # (the same bits on every x86-64 CPU with AVX2, slower). get_profile reads $DISSAM_NUMERICS; a portable
    # profile runs in its own folder (tag "portable"), never mixing its checkpoints with native ones.
    numerics: Literal["native", "portable"] = "native"

    def torch_device(self, local_rank: int = 0) -> "torch.device":
        """Where this profile's models run (training, predictions): ``cuda:<local_rank>`` when the profile
        asks for CUDA and a GPU is there, else the CPU (a CUDA profile on a CPU machine falls back)."""
        import torch

        if self.device.startswith("cuda") and torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")

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
        """Committed results live in figures/<profile>/, written by the series in either numerics mode (the
        committed smoke set is the portable one, the same on every CPU; native digits are this machine's);
        tiny runs and other tagged runs (a dry run) keep theirs in the run folder."""
        if self.name == "tiny" or self.tag not in ("", PORTABLE_TAG):
            return self.run_dir / "figures"
        return FIGURES_ROOT / self.name

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))



# ----------------------------------------------------------------------------- the places of a run
# Every file a profile's runs read or write is named here (the run folder and checkpoints are the
# Profile's own properties above).
def split_dir(profile: Profile, split: str) -> Path:
    """The im/gt folder of ``split`` under the profile's data root."""
    return profile.data_root / split


DRY_RUN_TAG = "dryrun"  # the tag dissam.repro.config.dry_run gives a profile
PORTABLE_TAG = "portable"  # the tag of a profile with portable numerics: its runs go to <profile>-portable/


def stage1_cache_root(profile: Profile) -> Path:
    """Where a profile's stage-1 masks live. A dry run shares its profile's real folder: its masks are
    keyed by image content, box and stage-1 model, none of which a dry run changes, so the real run
    reuses them (and its key file) instead of computing them again."""
    if profile.tag == DRY_RUN_TAG:
        return replace(profile, tag="").cache_dir
    return profile.cache_dir


def coarse_cache_dir(profile: Profile, split: str) -> Path:
    """One cache folder per split: the enriched and whole-GT boxes share it, so a single-component
    image's box is computed once (entries are keyed by image, box and stage-1 model)."""
    return stage1_cache_root(profile) / split


def resized_cache_dir(profile: Profile, split: str) -> Path:
    """The split's resized training cache (network-size uint8 arrays, :mod:`dissam.data.resized_cache`)."""
    return profile.run_dir / "resized_cache" / split


def run_checkpoint(profile: Profile, name: str) -> Path:
    """The best checkpoint of the refiner run ``name`` (``"main"``: the profile's refiner checkpoint)."""
    return profile.refiner_checkpoint if name == "main" else profile.checkpoint_dir / f"{name}.pt"


def run_last_checkpoint(profile: Profile, name: str) -> Path:
    """The run's last checkpoint (weights, optimiser, RNG states: what a resume reads)."""
    best = run_checkpoint(profile, name)
    return best.with_name(best.stem + "_last.pt")


def prediction_dir(profile: Profile, method: str, split: str) -> Path:
    """A method's saved predictions on a split (``<stem>.png``; the per-image CSV and measures beside it)."""
    return profile.run_dir / "predictions" / method / split


def skeleton_dir(profile: Profile) -> Path:
    """The on-disk GT skeleton cache of a profile's evaluations (keyed by GT content and skeletoniser,
    shared by every method, split and rerun)."""
    return profile.run_dir / "cache" / "skeletons"


def measures_path(profile: Profile, method: str, split: str) -> Path:
    """What pooling needs of one method on one split, beside its per-image CSV: ``<split>.npz``."""
    return prediction_dir(profile, method, split).with_suffix(".npz")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _cpu(name: ProfileName, data: DataConfig, train: TrainConfig, ablation: AblationConfig,
         grabcut_iters: int = 3, general_isnet_size: int = 384) -> Profile:
    """A CPU profile: procedural data, GrabCut as stage 1, the refiner from scratch (published weights exist
    only at width 1.0), on the CPU. The general-use IS-Net's row runs at ``general_isnet_size`` px: at
    its own 1024 px it would dominate the series' time on a CPU (docs/benchmarks.md, "The published
    IS-Net on the smoke sets")."""
    return Profile(name=name, data=data, coarse=CoarseConfig(kind="grabcut", grabcut_iters=grabcut_iters),
                   train=train, ablation=ablation, variant=Variant.paper(), device="cpu",
                   baselines=BaselineConfig(general_isnet_size=general_isnet_size))


# What the CPU profiles change of the paper's training: a small IS-Net (width 0.25, 2.8 M parameters) from
# scratch at 192 px, batch 8, a from-scratch rate with warm-up and cosine decay, validation every 100
# iterations, a GT encoder capped at 250 iterations, no DataLoader workers.
_CPU_TRAIN = dict(size=192, width=0.25, batch_size=8, lr=2e-3, warmup_frac=0.05, schedule="cosine", val_every=100,
                  num_workers=0, gt_encoder_iters=250, gt_encoder_val_every=50)


def _tiny() -> Profile:
    return _cpu("tiny", DataConfig(size=64, n_train=12, n_val=4, n_test=3, n_zero_shot=3),
                TrainConfig(**{**_CPU_TRAIN, "size": 64, "width": 0.125, "batch_size": 4, "max_iters": 4,
                               "val_every": 2, "gt_encoder_iters": 3, "gt_encoder_val_every": 2, "lr": 1e-3}),
                AblationConfig(max_iters=2, seeds=(0, 1), workers=1),  # tiny runs: no worker start-up
                grabcut_iters=1, general_isnet_size=128)


def _smoke() -> Profile:
    # Budgets (docs/smoke-recipe.md): 800 main iterations and 5 rows x 3 seeds x 100 ablation iterations
    # at batch 4, sized so that the notebook series fits in 20 minutes on a 2-core CPU (its time:
    # docs/benchmarks.md, "The smoke series"); the coarse prior (see TrainConfig.coarse_prior).
    return _cpu("smoke", DataConfig(size=192, n_train=400, n_val=40, n_test=40, n_zero_shot=40),
                TrainConfig(**_CPU_TRAIN, max_iters=800, coarse_prior=4.0),
                AblationConfig(max_iters=100, batch_size=4, seeds=(0, 1, 2)))


def _paper() -> Profile:
    """The defaults, with the files of this machine: DIS5K, the SAM checkpoint, and when given HQSeg-44K
    and the published isnet.pth (environment variables, or the CLI's and notebooks' parameters)."""
    return Profile(
        name="paper",
        data=DataConfig(root=Path(os.environ.get("DISSAM_DIS5K", REPO_ROOT / "data" / "DIS5K")),
                        hqseg_root=Path(os.environ["DISSAM_HQSEG"]) if os.environ.get("DISSAM_HQSEG") else None),
        coarse=CoarseConfig(checkpoint=Path(os.environ.get(
            "DISSAM_SAM_CHECKPOINT", REPO_ROOT / "checkpoints" / "sam_vit_b_01ec64.pth"))),
        # lr and gt_encoder_lr None: read from the variant when training starts, so swapping the variant
        # swaps the rates. The paper fine-tunes IS-Net at Adam 1e-5 (the variant's rate); from scratch that
        # rate is far too low (the authors' code trains from scratch at 4e-5), so the paper profile starts
        # from the published isnet.pth, as the paper says; without it training stops with a one-line error
        # saying where to get it. `dissam check --pilot` compares scratch@1e-5, scratch@4e-5 and
        # isnet@1e-5 on DIS-VD to confirm the choice on the first GPU day. The ablation runs get their own
        # budget (AblationConfig.main_budget gives them the main run's).
        baselines=BaselineConfig(isnet_checkpoint=Path(os.environ["DISSAM_ISNET_CHECKPOINT"])
                                 if os.environ.get("DISSAM_ISNET_CHECKPOINT") else None),
    )


# Which refiner layers the photo fine-tune trains: the stem's coarse-mask and box filters (zero at the
# start) and the decoder with its side outputs; the published encoder, RGB filters included, stays as it is.
PHOTO_TRAINABLE = ("conv_in.prompt", "stage5d", "stage4d", "stage3d", "stage2d", "stage1d", "side")


def _photo() -> Profile:
    """A CPU fine-tune of the published general-use IS-Net into a DIS-SAM refiner for photos (width 1.0,
    ``refiner_init="isnet"``), on the smoke profile's procedural scenes rendered at 256 px, GrabCut as
    stage 1. Its side outputs start at zero under the smoke profile's coarse prior, so it starts as its
    stage 1 and learns corrections on the published network's features. Its own run folder and budget;
    not a series profile (its tables would train full-width ablations). What trains, and why:
    docs/photo-finetune.md."""
    smoke = _smoke()
    weights = os.environ.get("DISSAM_ISNET_CHECKPOINT")
    if not weights:
        from ..model.published import published_checkpoint_path  # the cache `dissam weights isnet` fills

        weights = str(published_checkpoint_path())
    train = TrainConfig(size=256, width=1.0, batch_size=4, max_iters=1400, lr=1e-4, warmup_frac=0.05,
                        schedule="cosine", val_every=100, num_workers=0, use_gt_encoder=False,
                        trainable=PHOTO_TRAINABLE, freeze_batchnorm=True, coarse_prior=4.0, zero_side_outputs=True)
    return Profile(name="photo", data=replace(smoke.data, size=256), coarse=smoke.coarse, train=train,
                   ablation=smoke.ablation, variant=replace(Variant.paper(), refiner_init="isnet"), device="cpu",
                   baselines=BaselineConfig(isnet_checkpoint=Path(weights), general_isnet_size=384))


@contextlib.contextmanager
def runs_root(path: Path) -> Iterator[None]:
    """``$DISSAM_RUNS`` set to ``path`` inside the block (restored after), so no run outside ``path`` is touched."""
    old = os.environ.get("DISSAM_RUNS")
    os.environ["DISSAM_RUNS"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DISSAM_RUNS", None)
        else:
            os.environ["DISSAM_RUNS"] = old


_BUILDERS = {"tiny": _tiny, "smoke": _smoke, "paper": _paper, "photo": _photo}


def get_profile(name: str | None = None, **overrides: Any) -> Profile:
    """Build a profile by name (default: ``$DISSAM_PROFILE``, else ``smoke``); overrides replace top-level fields.
    ``$DISSAM_NUMERICS=portable`` gives the profile portable numerics and the tag "portable" (unless
    ``numerics`` or ``tag`` is among the overrides)."""
    name = name or os.environ.get("DISSAM_PROFILE") or "smoke"
    if name not in _BUILDERS:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = _BUILDERS[name]()
    if requested_mode() == "portable":
        profile = replace(profile, numerics="portable", tag=PORTABLE_TAG)
    return replace(profile, **overrides)


def dry_run(profile: Profile) -> Profile:
    """The paper profile's code path, made CPU-sized: every model and stage is built at full width,
    trained two iterations at 64 px, in a separate run folder."""
    train = replace(profile.train, size=64, batch_size=2, max_iters=2, val_every=2,
                    gt_encoder_iters=2, gt_encoder_val_every=2, num_workers=0)
    variant = profile.variant
    if variant.refiner_init == "isnet" and profile.baselines.isnet_checkpoint is None:
        variant = replace(variant, refiner_init="scratch")  # a dry run needs no download; given, it is used
    tag = DRY_RUN_TAG if profile.numerics == "native" else f"{DRY_RUN_TAG}-{profile.numerics}"
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


@dataclass(frozen=True)
class RunParams:
    """What a run asks for beyond its profile's defaults, in one object: the CLI's options and a notebook's
    parameters (papermill injects them into the notebook as ``RUN``, a dict of these fields). None (or a
    key left out): the profile's own. A SAM checkpoint selects SAM as stage 1."""

    profile: str | None = None  # tiny | smoke | paper (None: $DISSAM_PROFILE, else smoke)
    data_dir: str | Path | None = None  # a DIS5K-layout folder
    sam_checkpoint: str | Path | None = None
    sam_model_type: str | None = None  # vit_b | vit_l | vit_h (tiny for tests)
    dry_run: bool = False  # the paper profile's code path on the CPU, two iterations at 64 px
    isnet_checkpoint: str | Path | None = None  # the published IS-Net (Table I/II's IS-Net row; the refiner's start)
    hq_sam_checkpoint: str | Path | None = None  # adds the HQ-SAM rows of Tables I and II

    @classmethod
    def of(cls, value: "RunParams | Mapping[str, Any] | str | None") -> "RunParams":
        """``value`` as RunParams: itself, a dict of its fields (a notebook's ``RUN``), a profile name or None."""
        if isinstance(value, RunParams):
            return value
        if value is None or isinstance(value, str):
            return cls(profile=value)
        unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown run parameter(s) {sorted(unknown)}; known: "
                             f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """The parameters that differ from the defaults, JSON-ready (what papermill passes as ``RUN``)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()
                if v not in (None, False)}


def notebook_profile(params: "RunParams | Mapping[str, Any] | str | None" = None) -> Profile:
    """A notebook's setup in one call: figures drawn inline, the profile its ``RUN`` parameters describe,
    its figures folder made, one line saying where data, runs and figures go, and portable numerics put in
    force when the profile has them (with a second line saying so)."""
    _matplotlib_inline()
    profile = profile_from_params(params)
    profile.figures_dir.mkdir(parents=True, exist_ok=True)
    print(f"profile {profile.name}: data {profile.data_root}, runs {profile.run_dir}, figures {profile.figures_dir}")
    if profile.numerics != "native":  # before the notebook computes anything (dissam.numerics)
        apply_numerics(profile.numerics)
        print(describe_numerics())
    return profile


def profile_from_params(params: "RunParams | Mapping[str, Any] | str | None" = None) -> Profile:
    """The profile a run's parameters describe (:class:`RunParams`): the one place the CLI's options and
    the notebooks' parameters are applied."""
    run = RunParams.of(params)
    profile = get_profile(run.profile)
    profile.baselines = replace(  # given files replace the profile's own (e.g. $DISSAM_ISNET_CHECKPOINT)
        profile.baselines,
        isnet_checkpoint=Path(run.isnet_checkpoint) if run.isnet_checkpoint else profile.baselines.isnet_checkpoint,
        hq_sam_checkpoint=Path(run.hq_sam_checkpoint) if run.hq_sam_checkpoint else profile.baselines.hq_sam_checkpoint)
    if run.data_dir:
        profile.data.root = Path(run.data_dir)
    if run.sam_checkpoint:
        profile.coarse = replace(profile.coarse, kind="sam", checkpoint=Path(run.sam_checkpoint))
    if run.sam_model_type:
        profile.variant = replace(profile.variant, sam_model_type=run.sam_model_type)
    return dry_run(profile) if run.dry_run else profile
