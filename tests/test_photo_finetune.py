"""The photo fine-tune's measures and report: thin structures kept, refiners side by side on real photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dissam.coarse.grabcut import GrabCutSegmenter
from dissam.model.isnet import build_refiner
from dissam.predictor import DisSam
from dissam.repro import photo_finetune
from dissam.repro.real_photos import (GRABCUT, ISNET_CROP, PHOTOS, THIN_PHOTOS, compare_refiners, load_photo,
                                     thin_kept)
from tests.test_isnet_crop import segmenter


def test_thin_kept_counts_the_thin_parts_alone():
    reference = np.zeros((100, 100), np.uint8)
    reference[20:60, 20:60] = 255  # a solid block
    reference[70, 10:90] = 255  # a wire, one pixel wide
    blob_only = reference.copy()
    blob_only[70] = 0
    assert thin_kept(reference, reference) == 1.0
    assert thin_kept(reference, blob_only) == 0.0  # the block is all there, the wire gone
    assert 0.4 < thin_kept(reference, np.where(np.arange(100) < 50, reference, 0)) < 0.6  # half the wire
    assert np.isnan(thin_kept(blob_only, blob_only))  # no thin structure to keep
    thick = cv2.dilate(reference, np.ones((9, 9), np.uint8))  # the wire 9 px wide: no longer thin
    assert np.isnan(thin_kept(thick, thick))


def test_the_thin_photos_load_as_rgb_and_their_boxes_fit():
    for photo in THIN_PHOTOS:
        image = load_photo(photo)
        x0, y0, x1, y1 = photo.box
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]


def _model(seed: int) -> DisSam:
    import torch

    torch.manual_seed(seed)
    return DisSam(build_refiner(in_ch=5, width=0.0625, coarse_prior=4.0), GrabCutSegmenter(iters=1), size=64,
                  device="cpu", inference_path="eager")


def test_refiners_side_by_side_on_both_stage1s():
    models = {"a": _model(0), "b": _model(1)}
    owns = {k: m.segmenter for k, m in models.items()}
    photos = (PHOTOS[0], THIN_PHOTOS[1])
    results, table = compare_refiners(models, segmenter(), photos)
    assert all(m.segmenter is owns[k] for k, m in models.items())  # each model's own stage 1 restored
    assert len(table) == 2 * (2 + 2 * 2)  # per photo: two stage-1 masks, two refiners on each
    assert list(table["refiner"][:6]) == ["-", "a", "-", "a", "b", "b"]
    assert list(table["stage 1"][:6]) == [GRABCUT, GRABCUT, ISNET_CROP, ISNET_CROP, GRABCUT, ISNET_CROP]
    stage1 = table[table["refiner"] == "-"]
    assert stage1["interior kept %"].isna().all() and table[table["refiner"] != "-"]["interior kept %"].notna().any()
    crop_rows = stage1[stage1["stage 1"] == ISNET_CROP]
    assert set(crop_rows["IS-Net thin kept %"].dropna()) <= {100.0}  # the reference keeps all of itself
    assert (table["outside box %"][table["refiner"] == "-"] == 0).all()  # both stage 1s stay in the box

    summary = photo_finetune.summary(table)
    assert list(summary.columns[:2]) == ["refiner", "stage 1"] and len(summary) == 4
    figure = photo_finetune.comparison_figure(results)
    assert len(figure.axes) == len(photos) * (2 + 4 + 1)  # photo, crop, 2 refiners x 2 stage 1s, cut-out


def test_without_a_smoke_refiner_or_the_weights_the_report_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        photo_finetune._smoke_refiner()
    assert photo_finetune.main([]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback
    smoke = tmp_path / "smoke.pt"
    smoke.write_bytes(b"")
    monkeypatch.setenv("DISSAM_ISNET_CHECKPOINT", str(tmp_path / "absent.pth"))
    assert photo_finetune.main(["--smoke-checkpoint", str(smoke)]) == 2
    err = capsys.readouterr().err
    assert "absent.pth" in err and "dissam weights isnet" in err and err.count("\n") == 1
    assert not (tmp_path / "photo").exists()  # refused before any data was made


def test_committed_photo_finetune_results_carry_the_verdict():
    """figures/photo/photo_finetune.csv (`make photo-finetune`) holds what docs/photo-finetune.md says of it:
    every mask stays in its box; the smoke refiner on the IS-Net crop keeps at least 95% of the crop's
    interior on every photo; the fine-tune keeps less than that on the solid photos, so the simpler pair
    stays the answer for photos."""
    import pandas as pd

    from dissam.repro.config import FIGURES_ROOT

    table = pd.read_csv(FIGURES_ROOT / "photo" / "photo_finetune.csv")
    assert set(table["photo"]) == {p.name for p in PHOTOS + THIN_PHOTOS}
    assert (table["outside box %"] == 0).all()
    on_crop = table[table["stage 1"] == ISNET_CROP].set_index(["refiner", "photo"])["interior kept %"]
    assert (on_crop[photo_finetune.SMOKE_REFINER] >= 95).all()
    solid = [p.name for p in PHOTOS]
    assert (on_crop[photo_finetune.PHOTO_REFINER][solid] < 95).all()
