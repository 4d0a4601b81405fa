"""The HQSeg-44K adapter lists (image, GT) pairs from HQ-SAM's folder layout."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dissam.data.images import DataError
from dissam.data.hqseg import HQSEG_SOURCES, list_hqseg_pairs


def _write(root, source, stem, value):
    (root / source.im_dir).mkdir(parents=True, exist_ok=True)
    (root / source.gt_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(root / source.im_dir / f"{stem}{source.im_ext}")
    Image.fromarray(np.full((6, 8), 255, np.uint8)).save(root / source.gt_dir / f"{stem}{source.gt_ext}")


def test_every_source_is_listed_and_equal_stems_stay_apart(tmp_path):
    for k, source in enumerate(HQSEG_SOURCES):
        _write(tmp_path, source, "0001", 10 * k)
    pairs = list_hqseg_pairs(tmp_path)
    assert [p.stem for p in pairs] == [f"{s.name}/0001" for s in HQSEG_SOURCES]
    for k, pair in enumerate(pairs):
        image, gt = pair.load()  # a mask beside its image in one folder is not taken for an image
        assert image.shape == (6, 8, 3) and int(image[0, 0, 0]) == 10 * k and gt.min() == 255


def test_missing_folder_and_missing_mask_are_named(tmp_path):
    for source in HQSEG_SOURCES[:-1]:
        _write(tmp_path, source, "a", 1)
    with pytest.raises(DataError, match="MSRA_10K"):
        list_hqseg_pairs(tmp_path)
    _write(tmp_path, HQSEG_SOURCES[-1], "a", 1)
    (tmp_path / HQSEG_SOURCES[2].gt_dir / "a.png").unlink()
    with pytest.raises(DataError, match="FSS-1000: no mask"):
        list_hqseg_pairs(tmp_path)
