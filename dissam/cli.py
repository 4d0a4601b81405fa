"""Command line: ``dissam <command>`` (or ``python -m dissam``), and all of its file I/O: the CSV of
boxes and the mask files of ``dissam predict`` (:func:`run_predict`). Heavy imports happen inside commands.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .config import PROFILES, get_profile, profile_from_params
from .data.splits import TRAIN_SPLIT

if TYPE_CHECKING:
    import numpy as np

    from .predictor import DisSam


def _profile(args: argparse.Namespace):
    """The named profile, with ``--data`` / ``--sam-checkpoint`` applied (a SAM checkpoint selects SAM)."""
    return profile_from_params(args.profile, getattr(args, "data", None), getattr(args, "sam_checkpoint", None))


def cmd_data(args: argparse.Namespace) -> int:
    from .data.procedural import enrichment_summary
    from .stages import prepare_data

    profile = _profile(args)
    summary = prepare_data(profile)
    print(json.dumps(summary, indent=2, default=str))
    print(json.dumps(enrichment_summary(profile.data_root, TRAIN_SPLIT, profile.variant.enrichment), indent=2))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .stages import cache_stage1, prepare_data

    profile = _profile(args)
    prepare_data(profile)
    for name, manifest in cache_stage1(profile).items():
        print(f"{name}: {manifest['images']} images, {manifest['boxes']} boxes, "
              f"{manifest['encoder_calls']} encoder calls, {manifest['cache_hits']} cache hits")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .stages import run_stages
    from .train import RunSpec

    profile = _profile(args)
    if args.max_iters:
        profile.train.max_iters = args.max_iters
    if args.time_limit_minutes:
        profile.train.time_limit_minutes = args.time_limit_minutes
    if args.no_augment:
        profile.variant.augment = "none"
    spec = RunSpec(name=args.name, use_box=not args.no_box, use_mask=not args.no_mask, enrich=not args.no_enrich)
    result = run_stages(profile, spec, resume=not args.restart)
    print(f"best checkpoint {result.checkpoint} (iteration {result.best.get('iteration')}, "
          f"val maxF {result.best.get('maxF', float('nan')):.4f}); {result.iterations} iterations in {result.seconds:.0f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_folder

    if args.pred:
        records, summary = evaluate_folder(args.pred, args.gt)
        print(json.dumps(summary, indent=2))
        if args.csv:
            records.to_csv(args.csv, index=False)
        return 0
    from .evaluate import evaluate_main

    profile = _profile(args)
    print(evaluate_main(profile).to_string())
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import run_series

    return run_series(args.profile, data=args.data, sam_checkpoint=args.sam_checkpoint,
                      sam_model_type=args.sam_model_type, dry_run=args.dry_run, notebooks=args.only,
                      isnet_checkpoint=args.isnet_checkpoint, hq_sam_checkpoint=args.hq_sam_checkpoint)


def cmd_predict(args: argparse.Namespace) -> int:
    outputs = run_predict(args.image, box=args.box, boxes_csv=args.boxes, checkpoint=args.checkpoint,
                          out=args.output, profile=args.profile,
                          stage1_max_side="auto" if args.stage1_max_side is None else args.stage1_max_side)
    for path in outputs:
        print(path)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import run_from_args

    return run_from_args(args)


# ----------------------------------------------------------------------------- dissam predict
def default_checkpoint(profile: str | None = "smoke") -> Path:
    """The profile's trained refiner, or a :class:`CheckpointError` saying how to train one."""
    from .model.checkpoint import CheckpointError

    resolved = get_profile(profile)
    profile, path = resolved.name, resolved.refiner_checkpoint
    if not path.is_file():
        raise CheckpointError(
            f"no trained refiner at {path}: train one with `make reproduce` or "
            f"`python -m dissam train --profile {profile}`, or pass --checkpoint FILE")
    return path


def read_boxes_csv(path: str | Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Rows of a CSV with columns ``image,x0,y0,x1,y1`` (header required)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes CSV not found: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"image", "x0", "y0", "x1", "y1"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                             "(expected a header image,x0,y0,x1,y1)")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {line}: box values must be numbers ({err})") from err
            rows.append((row["image"].strip(), box))
    return rows  # type: ignore[return-value]


def _resolve_image(folder: Path, name: str) -> Path:
    """An image named in the CSV: relative to the folder (or its ``im/``), by file name or by stem."""
    from .data.folders import IMAGE_EXTS

    candidate = Path(name)
    if candidate.is_absolute() and candidate.is_file():
        return candidate
    for base in (folder, folder / "im"):
        if (base / name).is_file():
            return base / name
        for ext in IMAGE_EXTS:
            if (base / f"{name}{ext}").is_file():
                return base / f"{name}{ext}"
    raise FileNotFoundError(f"image {name!r} of the boxes CSV not found in {folder} (nor in {folder / 'im'})")


def _save_mask(mask: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return path


def run_predict(image_or_folder: str | Path, box: Sequence[float] | None = None,
                boxes_csv: str | Path | None = None, checkpoint: str | Path | None = None,
                out: str | Path = "masks", profile: str = "smoke", coarse: Any = None,
                model: DisSam | None = None, stage1_max_side: int | str | None = "auto") -> list[Path]:
    """The CLI's ``predict``: a single image and ``box`` -> one mask PNG (``out`` is the file when it ends
    in ``.png``, else a folder receiving ``<stem>_mask.png``); a folder (or image) and a CSV of boxes
    (``image,x0,y0,x1,y1``) -> one mask per row, ``out/<stem>_<k>.png`` (k-th box of that image; an
    ``out`` ending in ``.png`` names the folder without the suffix, so ``-o mask.png`` writes ``mask/``).
    Without ``checkpoint`` it uses the profile's trained refiner and says so on stderr.
    ``stage1_max_side``: the long side stage 1 sees (0: full size; ``"auto"``: see :class:`DisSam`)."""
    from .data.prompts import BoxError
    from .predictor import DisSam

    source, out = Path(image_or_folder), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"no such image or folder: {source}")
    if boxes_csv is None and box is None:
        raise BoxError("give a box (--box X0 Y0 X1 Y1) for a single image, or a CSV of boxes (--boxes CSV)")
    if boxes_csv is None and source.is_dir():
        raise BoxError(f"{source} is a folder: give a CSV of boxes (--boxes CSV, columns image,x0,y0,x1,y1)")
    if model is None:
        if checkpoint is None:
            checkpoint = default_checkpoint(profile)
            print(f"dissam predict: no --checkpoint given; using the {get_profile(profile).name} profile's "
                  f"trained refiner {checkpoint}", file=sys.stderr)
        model = DisSam.from_checkpoint(checkpoint, coarse=coarse, profile=profile, stage1_max_side=stage1_max_side)

    if boxes_csv is None:
        pred = model.predict(source, box)  # type: ignore[arg-type]
        target = out if out.suffix.lower() == ".png" else out / f"{source.stem}_mask.png"
        return [_save_mask(pred.mask, target)]

    folder = out.with_suffix("") if out.suffix.lower() == ".png" else out
    written, seen = [], {}  # type: ignore[var-annotated]
    for name, row_box in read_boxes_csv(boxes_csv):
        path = source if source.is_file() else _resolve_image(source, name)
        k = seen.get(path, 0)
        seen[path] = k + 1
        pred = model.predict(path, row_box)
        written.append(_save_mask(pred.mask, folder / f"{path.stem}_{k}.png"))
    return written


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: full size), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dissam", description="DIS-SAM reproduction: data, stage-1 cache, "
                                     "training, evaluation, the notebook series, and box-prompted prediction.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str, data_args: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--profile", choices=PROFILES, default=None,
                       help="run profile (default: $DISSAM_PROFILE, else smoke)")
        if data_args:
            p.add_argument("--data", type=Path, help="a DIS5K-layout folder (default: the profile's)")
            p.add_argument("--sam-checkpoint", type=Path, help="SAM checkpoint for stage 1 (default: the profile's)")
        p.set_defaults(func=func)
        return p

    add("data", cmd_data, "generate (procedural) or check (DIS5K) the profile's data; print enrichment counts")
    add("cache", cmd_cache, "compute stage-1 masks for every split into the on-disk cache")
    p = add("train", cmd_train, "train the GT encoder, then the refiner (resumes from the last checkpoint)")
    p.add_argument("--name", default="main", help="run name; 'main' writes the profile's refiner checkpoint")
    p.add_argument("--no-box", action="store_true", help="zero the box channel (ablation)")
    p.add_argument("--no-mask", action="store_true", help="zero the coarse-mask channel (ablation)")
    p.add_argument("--no-enrich", action="store_true", help="train on whole GTs, without enrichment")
    p.add_argument("--max-iters", type=int, help="override the profile's iteration budget")
    p.add_argument("--time-limit-minutes", type=float,
                   help="stop with an error (last checkpoint saved) past this many minutes; budgets stay iterations")
    p.add_argument("--restart", action="store_true", help="ignore an existing last checkpoint")
    p.add_argument("--no-augment", action="store_true", help="no flips (e.g. to compare runs exactly)")
    p = add("evaluate", cmd_evaluate, "evaluate the profile's model (or a folder of predictions) with the six DIS metrics")
    p.add_argument("--pred", type=Path, help="folder of predicted masks <stem>.png")
    p.add_argument("--gt", type=Path, help="im/gt folder the predictions belong to (with --pred)")
    p.add_argument("--csv", type=Path, help="write per-image metrics here (with --pred)")
    p = add("reproduce", cmd_reproduce, "run the notebook series 00-06 with papermill")
    p.add_argument("--dry-run", action="store_true",
                   help="paper profile on the CPU: build everything, two iterations at a small size")
    p.add_argument("--only", nargs="*", help="run only these notebooks (name prefixes, e.g. 00 02)")
    p.add_argument("--sam-model-type", help="SAM architecture of --sam-checkpoint (vit_b, vit_l, vit_h; tiny for tests)")
    p.add_argument("--isnet-checkpoint", type=Path,
                   help="the published IS-Net weights (isnet.pth): Tables I/II evaluate the real IS-Net")
    p.add_argument("--hq-sam-checkpoint", type=Path, help="HQ-SAM weights: adds the HQ-SAM rows of Tables I/II")
    p = add("check", cmd_check, "acceptance run of a profile's code path on one device (GPU; a small version on "
            "the CPU); writes a JSON report, exits 1 if a step failed", data_args=False)
    from .check import add_arguments

    add_arguments(p)
    p = add("predict", cmd_predict, "segment an image (or a folder with a CSV of boxes) from a box prompt",
            data_args=False)
    p.add_argument("image", type=Path, help="an image file, or a folder of images with --boxes")
    p.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="box in pixels")
    p.add_argument("--boxes", type=Path, help="CSV with columns image,x0,y0,x1,y1 (for a folder)")
    p.add_argument("--checkpoint", type=Path, help="refiner checkpoint (default: the smoke profile's)")
    p.add_argument("-o", "--output", type=Path, default=Path("mask.png"), help="mask file, or folder for --boxes")
    p.add_argument("--stage1-max-side", type=_non_negative_int, metavar="PX",
                   help="stage 1 sees the image shrunk to this long side (0: full size; default: GrabCut 192, SAM full)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:  # noqa: BLE001 - user errors become one line and exit 2; the rest propagate
        from .model.checkpoint import CheckpointError

        if not isinstance(err, (FileNotFoundError, ValueError, CheckpointError)):
            raise
        print(f"dissam {args.command}: error: {err}", file=sys.stderr)
        return 2
