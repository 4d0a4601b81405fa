"""HQSeg-44K (HQ-SAM's training set), the training data of the paper's DIS-SAM† row.

The layout is the one HQ-SAM's training script (SysCV/sam-hq, ``train/train.py``) reads under its data
root: DIS5K's training split in ``im``/``gt`` folders, ThinObject5K in ``images_train``/``masks_train``,
and the CascadePSP collection (FSS-1000, DUTS-TR, DUTS-TE, ECSSD, MSRA-10K) with each image ``<stem>.jpg``
beside its mask ``<stem>.png`` in one folder. :func:`list_hqseg_pairs` lists (image, GT) pairs from all
of them as :class:`dissam.data.folders.Pair`, which :class:`dissam.data.datasets.RefinerDataset` takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .folders import Pair
from .images import DataError


@dataclass(frozen=True)
class HQSegSource:
    """One data set of HQSeg-44K: its image and mask folders under the root, and their file endings."""

    name: str
    im_dir: str
    gt_dir: str
    im_ext: str = ".jpg"
    gt_ext: str = ".png"


HQSEG_SOURCES = (
    HQSegSource("DIS5K-TR", "DIS5K/DIS-TR/im", "DIS5K/DIS-TR/gt"),
    HQSegSource("ThinObject5K-TR", "thin_object_detection/ThinObject5K/images_train",
                "thin_object_detection/ThinObject5K/masks_train"),
    HQSegSource("FSS-1000", "cascade_psp/fss_all", "cascade_psp/fss_all"),
    HQSegSource("DUTS-TR", "cascade_psp/DUTS-TR", "cascade_psp/DUTS-TR"),
    HQSegSource("DUTS-TE", "cascade_psp/DUTS-TE", "cascade_psp/DUTS-TE"),
    HQSegSource("ECSSD", "cascade_psp/ecssd", "cascade_psp/ecssd"),
    HQSegSource("MSRA-10K", "cascade_psp/MSRA_10K", "cascade_psp/MSRA_10K"),
)
HQSEG_SPLIT = "HQSeg-44K"  # the name its stage-1 cache and run are kept under


def source_pairs(root: Path, source: HQSegSource) -> list[Pair]:
    """The (image, GT) pairs of one source, sorted by stem; an image without its mask is an error."""
    im_dir, gt_dir = root / source.im_dir, root / source.gt_dir
    images = sorted(p for p in im_dir.iterdir() if p.suffix.lower() == source.im_ext)
    missing = [im for im in images if not (gt_dir / f"{im.stem}{source.gt_ext}").is_file()]
    if missing:
        raise DataError(f"HQSeg-44K {source.name}: no mask {gt_dir / (missing[0].stem + source.gt_ext)} for "
                        f"{missing[0]} ({len(missing)} image(s) without a mask)")
    return [Pair(f"{source.name}/{im.stem}", im, gt_dir / f"{im.stem}{source.gt_ext}") for im in images]


def list_hqseg_pairs(root: str | Path, sources: tuple[HQSegSource, ...] = HQSEG_SOURCES) -> list[Pair]:
    """Every (image, GT) pair of HQSeg-44K under ``root``, source by source; stems are
    ``<source>/<file stem>`` so that equal file names of two sources stay apart. A missing folder is a
    one-line error naming it and the expected layout."""
    root = Path(root)
    absent = [root / s.im_dir for s in sources if not (root / s.im_dir).is_dir()]
    if absent:
        raise DataError(f"HQSeg-44K not found under {root}: missing {absent[0]} ({len(absent)} folder(s) missing; "
                        "expected HQ-SAM's layout: DIS5K/DIS-TR/im, thin_object_detection/ThinObject5K/"
                        "images_train, cascade_psp/{fss_all,DUTS-TR,DUTS-TE,ecssd,MSRA_10K})")
    pairs = [pair for source in sources for pair in source_pairs(root, source)]
    if not pairs:
        raise DataError(f"HQSeg-44K under {root} holds no images")
    return pairs
