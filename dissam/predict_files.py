"""``dissam predict``'s files: the CSV of boxes, image folders, and the mask, cut-out and overlay files
(:func:`run_predict`; the pixels of cut-outs and overlays are :mod:`dissam.outputs`), and the published
IS-Net alone on whole images (:func:`run_isnet_predict`, saved as IS-Net's ``Inference.py`` saves them).
A face of the package, as the command line is: the default checkpoint is a profile's trained refiner.
"""
from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from .repro.config import get_profile

if TYPE_CHECKING:
    import numpy as np

    from .predictor import DisSam

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
    from .data.images import IMAGE_EXTS

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
    from .data.images import IMAGE_EXTS

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


def _check_request(source: Path, box: Sequence[float] | None, boxes_csv: str | Path | None, cutout: bool,
                   soft: bool) -> None:
    """One-line errors for a request ``dissam predict`` cannot serve."""
    if not source.exists():
        raise FileNotFoundError(f"no such image or folder: {source}")
    if soft and not cutout:
        raise ValueError("--soft sets the cut-out's alpha: use it with --cutout")
    if box is not None and boxes_csv is not None:
        raise ValueError("give either --box or --boxes, not both")
    if box is not None and source.is_dir():
        raise ValueError(f"{source} is a folder: --box is for one image (use --boxes CSV, or no box for "
                         "the whole image)")


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
    from .predictor import DisSam

    source, out = Path(image_or_folder), Path(out)
    _check_request(source, box, boxes_csv, cutout, soft)
    jobs = _plan(source, box, boxes_csv, out)
    if model is None:
        if checkpoint is None:
            checkpoint = default_checkpoint(profile)
            print(f"dissam predict: no --checkpoint given; using the {get_profile(profile).name} profile's "
                  f"trained refiner {checkpoint}", file=sys.stderr)
        model = DisSam.from_checkpoint(checkpoint, coarse=coarse,
                                       stage1_max_side=stage1_max_side, refine_region=refine_region)
    if any(job.box is None for job in jobs):
        print("dissam predict: no box given; each image is segmented with the whole image as its box",
              file=sys.stderr)

    batch = not (boxes_csv is None and source.is_file())
    return _predict_jobs(model, jobs, batch, "box" if boxes_csv else "img", progress, cutout, soft, overlay)


def _predict_jobs(model: DisSam, jobs: list[PredictJob], batch: bool, unit: str, progress: bool | None,
                  cutout: bool, soft: bool, overlay: bool) -> PredictRun:
    """Every job predicted and written in order (an image read once for its consecutive boxes); in a
    ``batch`` run a failed job is named on stderr and skipped."""
    from tqdm.auto import tqdm

    from .data.images import read_image

    result = PredictRun()
    errors = _item_errors() if batch else ()
    bar = tqdm(jobs, desc="dissam predict", unit=unit, file=sys.stderr,
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


def run_isnet_predict(image_or_folder: str | Path, out: str | Path = "mask.png", checkpoint: str | Path | None = None,
                      cutout: bool = False, progress: bool | None = None):
    """The published IS-Net on an image or every image of a folder (see the module docstring). Each
    mask is ``Inference.py``'s uint8 map (not binarised); ``cutout`` adds ``<stem>_cutout.png`` with that
    map as alpha. Returns a :class:`PredictRun`; a bad image in a folder is named and skipped."""
    from tqdm.auto import tqdm

    from . import outputs
    from .data.images import read_image
    from .model.published import find_published_isnet
    from .model.published_predict import PublishedISNet

    source, out = Path(image_or_folder), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"no such image or folder: {source}")
    jobs = _plan(source, None, None, out)
    weights = find_published_isnet(checkpoint)
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
