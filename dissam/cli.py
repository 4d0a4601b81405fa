"""Command line: ``dissam <command>`` (or ``python -m dissam``), and all of its file I/O: the CSV of
boxes, the image folders and the mask, cut-out and overlay files of ``dissam predict`` (:func:`run_predict`;
the pixels of cut-outs and overlays are :mod:`dissam.outputs`). Heavy imports happen inside commands.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from .config import PROFILES, get_profile, profile_from_params
from .data.splits import TRAIN_SPLIT
from .numerics import ENV_VAR as NUMERICS_ENV_VAR
from .numerics import MODES, portable_environment

if TYPE_CHECKING:
    import numpy as np

    from .predictor import DisSam


def _profile(args: argparse.Namespace):
    """The named profile, with ``--data`` / ``--sam-checkpoint`` applied (a SAM checkpoint selects SAM)."""
    return profile_from_params(args.profile, getattr(args, "data", None), getattr(args, "sam_checkpoint", None),
                               isnet_checkpoint=getattr(args, "isnet_checkpoint", None))


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
    result = run_predict(args.image, box=args.box, boxes_csv=args.boxes, checkpoint=args.checkpoint,
                         out=args.output, profile=args.profile, cutout=args.cutout, soft=args.soft,
                         overlay=args.overlay, refine_region=args.refine_region,
                         stage1_max_side="auto" if args.stage1_max_side is None else args.stage1_max_side)
    for path in result.written:
        print(path)
    print(f"dissam predict: {result.predicted} written, {len(result.failed)} failed", file=sys.stderr)
    return 1 if result.failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import run_from_args

    return run_from_args(args)


def cmd_export(args: argparse.Namespace) -> int:
    """``dissam export CHECKPOINT -o refiner.onnx``: the refiner as a checked ONNX file (see
    :mod:`dissam.model.onnx_export`); a missing onnx package is one line, exit 2."""
    try:
        from .model.onnx_export import export_refiner, require

        require("onnx")
    except ImportError as err:
        print(f"dissam export: error: {err}", file=sys.stderr)
        return 2
    path = export_refiner(args.checkpoint, args.output, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input [B, C, H, W] -> prob [B, 1, H, W]")
    return 0


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


class BoxRow(NamedTuple):
    """One row of a boxes CSV: the image as named, its box (x0, y0, x1, y1) and the CSV line."""

    image: str
    box: tuple[float, float, float, float]
    line: int


def read_boxes_csv(path: str | Path) -> list[BoxRow]:
    """Rows of a CSV with columns ``image,x0,y0,x1,y1`` (header required; a non-number is an error)."""
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
        for row in reader:
            try:
                box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {reader.line_num}: box values must be numbers ({err})") from err
            rows.append(BoxRow((row["image"] or "").strip(), box, reader.line_num))  # type: ignore[arg-type]
    return rows


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


def list_images(folder: Path) -> list[Path]:
    """The images of a folder (recognised extensions, sorted by name); its ``im/`` when it has none
    (the DIS5K layout). An empty folder is an error."""
    from .data.folders import IMAGE_EXTS

    for base in (folder, folder / "im"):
        if base.is_dir():
            images = sorted(p for p in base.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
            if images:
                return images
    raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) in {folder} (nor in {folder / 'im'})")


def _output_stems(paths: Sequence[Path]) -> dict[Path, str]:
    """The name each image's outputs start with: its stem, or, where two images share a stem
    (``a.png`` and ``a.jpg``), the file name with its dot replaced (``a_png``, ``a_jpg``)."""
    counts: dict[str, int] = {}
    for path in dict.fromkeys(paths):
        counts[path.stem] = counts.get(path.stem, 0) + 1
    return {p: p.stem if counts[p.stem] == 1 else p.name.replace(".", "_") for p in paths}


@dataclass
class PredictJob:
    """One prediction to make: the image (or why it could not be found), its box (None: the whole
    image), where the mask goes, the stem of the other outputs and the label errors name it by."""

    label: str
    image: Path | None
    box: Sequence[float] | None
    mask_path: Path
    stem: str
    error: Exception | None = None


@dataclass
class PredictRun:
    """What ``dissam predict`` did: every file written (in order), how many predictions were written,
    and the ``(label, reason)`` of each one that failed."""

    written: list[Path] = field(default_factory=list)
    predicted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _item_errors() -> tuple[type[BaseException], ...]:
    """What one bad image, CSV row or box raises (reported and skipped in a batch); anything else is a bug."""
    import cv2
    from PIL import Image

    return ValueError, OSError, Image.DecompressionBombError, cv2.error


def _plan(source: Path, box: Sequence[float] | None, boxes_csv: str | Path | None, out: Path) -> list[PredictJob]:
    """Every prediction of a ``predict`` call and its file names (see :func:`run_predict`)."""
    single_file = out.suffix.lower() == ".png"
    folder = out.with_suffix("") if single_file else out
    if boxes_csv is None and source.is_file():
        target = out if single_file else out / f"{source.stem}_mask.png"
        return [PredictJob(str(source), source, box, target, source.stem)]
    if boxes_csv is None:
        images = list_images(source)
        stems = _output_stems(images)
        return [PredictJob(str(p), p, None, folder / f"{stems[p]}_mask.png", stems[p]) for p in images]
    rows, resolved = read_boxes_csv(boxes_csv), []
    for row in rows:
        try:
            resolved.append(source if source.is_file() else _resolve_image(source, row.image))
        except FileNotFoundError as err:
            resolved.append(err)
    stems = _output_stems([p for p in resolved if isinstance(p, Path)])
    jobs, seen = [], {}  # type: ignore[var-annotated]
    for row, path in zip(rows, resolved):
        label = f"{Path(boxes_csv).name} line {row.line} ({row.image})"
        if not isinstance(path, Path):
            jobs.append(PredictJob(label, None, row.box, folder, row.image, error=path))
            continue
        k = seen.get(path, 0)
        seen[path] = k + 1
        stem = f"{stems[path]}_{k}"
        jobs.append(PredictJob(label, path, row.box, folder / f"{stem}.png", stem))
    return jobs


def _save_png(image: np.ndarray, path: Path) -> Path:
    """A uint8 array (gray, RGB or RGBA) as a PNG, written atomically (no half file under the name)."""
    from PIL import Image

    from .fileio import atomic_write

    return atomic_write(path, lambda fh: Image.fromarray(image).save(fh, format="PNG"), durable=False)


def _write_outputs(job: PredictJob, rgb: np.ndarray, pred: Any, cutout: bool, soft: bool,
                   overlay: bool) -> list[Path]:
    from . import outputs

    written = [_save_png(pred.mask, job.mask_path)]
    folder = job.mask_path.parent
    if cutout:
        alpha = pred.prob if soft else pred.mask
        written.append(_save_png(outputs.cutout(rgb, alpha), folder / f"{job.stem}_cutout.png"))
    if overlay:
        written.append(_save_png(outputs.outline_overlay(rgb, pred.mask, pred.box), folder / f"{job.stem}_overlay.png"))
    return written


def run_predict(image_or_folder: str | Path, box: Sequence[float] | None = None,
                boxes_csv: str | Path | None = None, checkpoint: str | Path | None = None,
                out: str | Path = "masks", profile: str | None = "smoke", coarse: Any = None,
                model: DisSam | None = None, cutout: bool = False, soft: bool = False,
                overlay: bool = False, progress: bool | None = None,
                stage1_max_side: int | str | None = "auto", refine_region: str = "image") -> PredictRun:
    """The CLI's ``predict``. Inputs:

    * an image and ``box`` -> one prediction; without ``box``, the box is the whole image;
    * a folder without ``boxes_csv`` -> every image in it (:func:`list_images`), each with the whole
      image as its box (said once on stderr);
    * a folder (or one image) and a CSV of boxes (``image,x0,y0,x1,y1``) -> one prediction per row.

    Files (all PNG): the mask (uint8 0/255) is ``<stem>_mask.png``, or ``<stem>_<k>.png`` for the k-th
    box of an image in the CSV; ``cutout`` adds ``<stem>[_<k>]_cutout.png``, the image as read (EXIF
    rotation applied, 8-bit RGB) with the mask as alpha (``soft``: the refiner's probabilities, 0..255, for
    soft edges such as hair); ``overlay`` adds ``<stem>[_<k>]_overlay.png``, the image with the mask's
    outline (green) and the box's edges (yellow) drawn on it. ``out`` is the folder; for a single image
    an ``out`` ending in ``.png`` is the mask file itself (the other outputs go beside it), and in the
    batch modes it names the folder without the suffix (``-o mask.png`` writes ``mask/``). Two images
    sharing a stem (``a.png``, ``a.jpg``) are told apart as ``a_png``, ``a_jpg``.

    One image given alone fails with an exception. In the batch modes each bad image, row or box
    (unreadable, empty or corrupt file, box outside its image, image not found) is named on stderr and
    skipped; the rest are written (:attr:`PredictRun.failed`). Without ``checkpoint`` the profile's trained
    refiner is used, said on stderr. ``progress`` (None: on a terminal) shows a progress bar.
    ``stage1_max_side``: the long side stage 1 sees (0: full size; ``"auto"``: see :class:`DisSam`);
    ``refine_region``: ``"image"`` (the paper) or ``"box"`` (refine a crop around the box; see
    :class:`DisSam`), for a model loaded here."""
    from tqdm.auto import tqdm

    from .data.folders import read_image
    from .predictor import DisSam

    source, out = Path(image_or_folder), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"no such image or folder: {source}")
    if soft and not cutout:
        raise ValueError("--soft sets the cut-out's alpha: use it with --cutout")
    if box is not None and boxes_csv is not None:
        raise ValueError("give either --box or --boxes, not both")
    if box is not None and source.is_dir():
        raise ValueError(f"{source} is a folder: --box is for one image (use --boxes CSV, or no box for "
                         "the whole image)")
    jobs = _plan(source, box, boxes_csv, out)
    if model is None:
        if checkpoint is None:
            checkpoint = default_checkpoint(profile)
            print(f"dissam predict: no --checkpoint given; using the {get_profile(profile).name} profile's "
                  f"trained refiner {checkpoint}", file=sys.stderr)
        model = DisSam.from_checkpoint(checkpoint, coarse=coarse, profile=profile,
                                       stage1_max_side=stage1_max_side, refine_region=refine_region)
    if any(job.box is None for job in jobs):
        print("dissam predict: no box given; each image is segmented with the whole image as its box",
              file=sys.stderr)

    result, batch = PredictRun(), not (boxes_csv is None and source.is_file())
    errors = _item_errors() if batch else ()
    bar = tqdm(jobs, desc="dissam predict", unit="box" if boxes_csv else "img", file=sys.stderr,
               disable=True if not batch else (None if progress is None else not progress))
    last: tuple[Path | None, np.ndarray | None] = (None, None)
    for job in bar:
        try:
            if job.error is not None:
                raise job.error
            rgb = last[1] if last[0] == job.image else read_image(job.image)  # type: ignore[arg-type]
            last = (job.image, rgb)
            h, w = rgb.shape[:2]
            pred = model.predict(rgb, (0, 0, w, h) if job.box is None else job.box)
            result.written += _write_outputs(job, rgb, pred, cutout, soft, overlay)
            result.predicted += 1
        except errors as err:
            result.failed.append((job.label, str(err)))
            tqdm.write(f"dissam predict: failed: {job.label}: {err}", file=sys.stderr)
    return result


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: full size), got {value}")
    return value


def set_numerics_environment(mode: str) -> None:
    """``$DISSAM_NUMERICS`` and, for ``portable``, the variables torch and MKL read when they load
    (:func:`dissam.numerics.portable_environment`): set before torch is imported, so this process and
    the processes it starts run that mode."""
    import os

    if mode == "portable":
        os.environ.update(portable_environment())
    os.environ[NUMERICS_ENV_VAR] = mode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dissam", description="DIS-SAM reproduction: data, stage-1 cache, "
                                     "training, evaluation, the notebook series, and box-prompted prediction.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str, data_args: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--profile", choices=PROFILES, default=None,
                       help="run profile (default: $DISSAM_PROFILE, else smoke)")
        p.add_argument("--numerics", choices=MODES, default=None,
                       help="CPU numerics: native (fastest; the bits differ between CPUs) or portable (the same bits "
                       "on every x86-64 CPU with AVX2, slower); default $DISSAM_NUMERICS, else native. See README, "
                       "'Numerics: the same bits on every CPU'")
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
    p.add_argument("--isnet-checkpoint", type=Path, help="the published isnet.pth the paper profile's refiner "
                   "fine-tunes (Variant.refiner_init='isnet'; default $DISSAM_ISNET_CHECKPOINT)")
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
    p = add("export", cmd_export, "export a refiner checkpoint to ONNX (dynamic batch, height and width; "
            "run it with DisSam.from_checkpoint('refiner.onnx'))", data_args=False)
    p.add_argument("checkpoint", type=Path, help="refiner checkpoint (ours or an official IS-Net file)")
    p.add_argument("-o", "--output", type=Path, default=Path("refiner.onnx"), help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p = add("predict", cmd_predict, "segment an image, a folder of images, or a folder with a CSV of boxes from "
            "box prompts (no box: the whole image): masks, cut-outs, overlays", data_args=False)
    p.epilog = ("In a folder or CSV run each bad image or row is named on stderr and skipped; the exit status is 1 "
                "when any failed, 2 on a usage error.")
    p.add_argument("image", type=Path, help="an image file, or a folder of images")
    p.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="box in pixels, for one image (default: the whole image)")
    p.add_argument("--boxes", type=Path, help="CSV with columns image,x0,y0,x1,y1: one prediction per row, "
                   "written as <stem>_<k>.png (k-th box of that image)")
    p.add_argument("--checkpoint", type=Path, help="refiner checkpoint (default: the profile's trained one)")
    p.add_argument("-o", "--output", type=Path, default=Path("mask.png"),
                   help="output folder; for one image a name ending in .png is the mask file (default mask.png; "
                   "a folder or CSV then writes into mask/). Masks are <stem>_mask.png")
    p.add_argument("--cutout", action="store_true",
                   help="also write <stem>_cutout.png: the image as RGBA with the mask as alpha")
    p.add_argument("--soft", action="store_true",
                   help="with --cutout: the refiner's probabilities as alpha (soft edges, e.g. hair)")
    p.add_argument("--overlay", action="store_true",
                   help="also write <stem>_overlay.png: the image with the mask outline and the box drawn")
    p.add_argument("--refine-region", choices=("image", "box"), default="image",
                   help="what the refiner reads: the whole image (the paper; default) or a crop around the box, "
                   "for small objects in large images (see README, 'Inference at high resolution')")
    p.add_argument("--stage1-max-side", type=_non_negative_int, metavar="PX",
                   help="stage 1 sees the image shrunk to this long side (0: full size; default: GrabCut 512, SAM "
                   "full; 192 for a fast interactive box)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.numerics:  # before any command imports torch; notebook kernels and workers inherit it
        set_numerics_environment(args.numerics)
    try:
        return int(args.func(args) or 0)
    except Exception as err:  # noqa: BLE001 - user errors become one line and exit 2; the rest propagate
        from .model.checkpoint import CheckpointError

        if not isinstance(err, (FileNotFoundError, ValueError, CheckpointError)):
            raise
        print(f"dissam {args.command}: error: {err}", file=sys.stderr)
        return 2
