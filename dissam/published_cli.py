"""The command line of the published IS-Net: ``dissam weights isnet`` and ``dissam predict --model isnet``.

``weights isnet`` fetches, checks and converts the published weights into the user's cache
(:func:`dissam.model.published.ensure_published_isnet`) and prints the checkpoint's path.
``predict --model isnet`` runs the published IS-Net alone on each whole image and saves its map as
IS-Net's ``Inference.py`` saves it (:class:`dissam.model.published_predict.PublishedISNet`), with the
file names and folder handling of ``dissam predict`` (:func:`dissam.cli.run_predict`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ISNET_ENV = "DISSAM_ISNET_CHECKPOINT"
# predict options that belong to DIS-SAM (a box prompt, stage 1, the refiner checkpoint) and their defaults
_DISSAM_ONLY = {"box": None, "boxes": None, "checkpoint": None, "overlay": False, "soft": False,
                "refine_region": "image", "stage1_max_side": None}


def cmd_weights(args: argparse.Namespace) -> int:
    """``dissam weights isnet [--tarball FILE] [--force]``: the converted checkpoint's path on stdout."""
    from .model.published import ensure_published_isnet

    path = ensure_published_isnet(tarball=args.tarball, force=args.force,
                                  log=lambda msg: print(f"dissam weights: {msg}", file=sys.stderr))
    print(path)
    return 0


def isnet_checkpoint(given: str | Path | None = None) -> Path:
    """The published IS-Net weights to use: ``given``, else ``$DISSAM_ISNET_CHECKPOINT``, else the
    checkpoint ``dissam weights isnet`` converted into the cache; a one-line CheckpointError if none."""
    from .model.checkpoint import CheckpointError
    from .model.published import elsewhere, published_checkpoint_path

    chosen = given or os.environ.get(ISNET_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise CheckpointError(f"IS-Net weights not found: {chosen}")
        return Path(chosen)
    cached = published_checkpoint_path()
    if not cached.is_file():
        raise CheckpointError(f"no published IS-Net weights in {cached.parent}: run `dissam weights isnet` "
                              f"(or `make weights`), or {elsewhere()}")
    return cached


def run_isnet_predict(image_or_folder: str | Path, out: str | Path = "mask.png", checkpoint: str | Path | None = None,
                      cutout: bool = False, progress: bool | None = None):
    """The published IS-Net on an image or every image of a folder (see the module docstring). Each
    mask is ``Inference.py``'s uint8 map (not binarised); ``cutout`` adds ``<stem>_cutout.png`` with that
    map as alpha. Returns a :class:`dissam.cli.PredictRun`; a bad image in a folder is named and skipped."""
    from tqdm.auto import tqdm

    from . import outputs
    from .cli import PredictRun, _item_errors, _plan, _save_png
    from .data.folders import read_image
    from .model.published_predict import PublishedISNet

    source, out = Path(image_or_folder), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"no such image or folder: {source}")
    jobs = _plan(source, None, None, out)
    weights = isnet_checkpoint(checkpoint)
    print(f"dissam predict: the published IS-Net ({weights}) on each whole image", file=sys.stderr)
    model = PublishedISNet.from_checkpoint(weights)
    result, batch = PredictRun(), source.is_dir()
    errors = _item_errors() if batch else ()
    bar = tqdm(jobs, desc="dissam predict", unit="img", file=sys.stderr,
               disable=True if not batch else (None if progress is None else not progress))
    for job in bar:
        try:
            rgb = read_image(job.image)  # type: ignore[arg-type]
            mask = model.predict(rgb)
            result.written.append(_save_png(mask, job.mask_path))
            if cutout:
                cut = job.mask_path.parent / f"{job.stem}_cutout.png"
                result.written.append(_save_png(outputs.cutout(rgb, mask), cut))
            result.predicted += 1
        except errors as err:
            result.failed.append((job.label, str(err)))
            tqdm.write(f"dissam predict: failed: {job.label}: {err}", file=sys.stderr)
    return result


def cmd_predict_isnet(args: argparse.Namespace) -> int:
    """``dissam predict IMAGE --model isnet``: DIS-SAM's own options are a usage error here."""
    given = [name for name, default in _DISSAM_ONLY.items() if getattr(args, name, default) != default]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"--model isnet runs the published IS-Net alone on each whole image: {flags} "
                         "are DIS-SAM options (give the weights with --isnet-checkpoint)")
    result = run_isnet_predict(args.image, out=args.output, checkpoint=args.isnet_checkpoint, cutout=args.cutout)
    for path in result.written:
        print(path)
    print(f"dissam predict: {result.predicted} written, {len(result.failed)} failed", file=sys.stderr)
    return 1 if result.failed else 0
