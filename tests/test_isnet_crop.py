"""Stage 1 from the published IS-Net on a window around the box (dissam.coarse.isnet_crop): where its
answer goes, what identifies it, how the predictor and the widget pick it, and on a real photo with the
real weights that it finds the object GrabCut finds and nothing outside the box."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dissam.coarse import KINDS, build_coarse
from dissam.coarse.grabcut import GrabCutSegmenter
from dissam.coarse.isnet_crop import IsNetCropSegmenter
from dissam.data.prompts import crop_window
from dissam.model.isnet import build_refiner
from dissam.model.published import published_checkpoint_path
from dissam.predictor import stage1_of

USER_WEIGHTS = published_checkpoint_path()


class Everywhere(torch.nn.Module):
    """A 3-channel 'IS-Net' whose map is 1 wherever the window's red channel is bright, 0 elsewhere."""

    config = {"in_ch": 3}

    def predict(self, x):
        return (x[:, :1] > 0.0).float()

    def forward(self, x):
        return [self.predict(x)], []


def segmenter(**settings) -> IsNetCropSegmenter:
    return IsNetCropSegmenter(model=Everywhere(), input_size=64, device="cpu", **settings)


def test_the_answer_is_bounded_by_the_box_or_by_the_window():
    image = np.full((90, 120, 3), 255, np.uint8)  # bright everywhere: the map is 1 on the whole window
    box = (40, 30, 70, 50)
    x0, y0, x1, y1 = box
    in_box = segmenter().__call__(image, box) > 127
    expected = np.zeros((90, 120), bool)
    expected[y0:y1, x0:x1] = True
    assert (in_box == expected).all()

    wy0, wy1, wx0, wx1 = crop_window(box, 90, 120, 0.2)
    window = np.zeros((90, 120), bool)
    window[wy0:wy1, wx0:wx1] = True
    in_window = segmenter(clip_to_box=False)(image, box) > 127
    assert (in_window == window).all() and window.sum() > expected.sum()


def test_what_it_marks_follows_the_image_inside_the_window():
    image = np.zeros((80, 80, 3), np.uint8)
    image[20:40, 25:45, 0] = 255  # a red square; the stand-in marks red
    result = segmenter()
    result.set_image(image)
    answer = result.predict((10, 10, 60, 60))
    fg = answer.mask > 127
    assert fg[22:38, 27:43].all() and not fg[45:, :].any() and not fg[:, 50:].any()
    assert answer.logits is not None and answer.logits.shape == (80, 80)
    assert np.array_equal(answer.logits > 0, fg)


def test_the_key_names_every_setting_and_the_weights():
    keys = {segmenter().key, segmenter(margin=0.1).key, segmenter(clip_to_box=False).key,
            IsNetCropSegmenter(model=Everywhere(), input_size=128, device="cpu").key}
    assert len(keys) == 4
    other = build_refiner(in_ch=3, width=0.0625)
    assert (IsNetCropSegmenter(model=other, input_size=64, device="cpu").key
            != IsNetCropSegmenter(model=build_refiner(in_ch=3, width=0.0625), input_size=64, device="cpu").key)


def test_bad_settings_and_missing_weights_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="margin"):
        segmenter(margin=-0.1)
    with pytest.raises(ValueError, match="input_size"):
        IsNetCropSegmenter(model=Everywhere(), input_size=8)
    monkeypatch.setenv("DISSAM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("DISSAM_ISNET_CHECKPOINT", raising=False)
    with pytest.raises(Exception, match="dissam weights isnet"):
        build_coarse("isnet")
    assert "isnet" in KINDS


def test_a_checkpoint_asked_for_isnet_gets_no_sam_settings(monkeypatch):
    seen = {}
    monkeypatch.setattr("dissam.predictor.build_coarse", lambda **spec: seen.update(spec))
    stage1_of({"stage1": {"kind": "sam", "checkpoint": "sam.pth", "model_type": "vit_b", "multimask": True}},
              "isnet")
    assert seen == {"kind": "isnet"}
    stage1_of({"stage1": {"kind": "sam", "checkpoint": "sam.pth", "model_type": "vit_b"}}, "hq-sam")
    assert seen["checkpoint"] == "sam.pth"


@pytest.mark.skipif(not USER_WEIGHTS.is_file(), reason=f"the published IS-Net is not in the cache ({USER_WEIGHTS}): "
                    "`dissam weights isnet` (or `make weights`) fetches and converts it")
def test_on_a_real_photo_it_finds_what_grabcut_finds_and_nothing_outside_the_box():
    from dissam.repro.real_photos import PHOTOS, load_photo

    coffee, helmet = PHOTOS[0], PHOTOS[3]
    isnet = build_coarse("isnet", checkpoint=USER_WEIGHTS, input_size=512, device="cpu")
    image = load_photo(coffee)
    ours, grabcut = isnet(image, coffee.box) > 127, GrabCutSegmenter()(image, coffee.box) > 127
    assert (ours & grabcut).sum() / (ours | grabcut).sum() > 0.85  # measured 0.92
    image = load_photo(helmet)
    x0, y0, x1, y1 = helmet.box
    mask = isnet(image, helmet.box) > 127
    outside = mask.copy()
    outside[y0:y1, x0:x1] = False
    assert mask.mean() > 0.05 and not outside.any()


def test_dissam_predict_stage1_isnet_runs_the_crop_with_the_given_weights(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from dissam.cli import main
    from dissam.model.checkpoint import save_refiner

    refiner = save_refiner(build_refiner(in_ch=5, width=0.125, coarse_prior=4.0), tmp_path / "refiner.pth",
                           train_config={"size": 64})
    weights = save_refiner(build_refiner(in_ch=3, width=0.0625), tmp_path / "isnet.pth")
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "photo.png")
    calls = []
    original = IsNetCropSegmenter._predict
    monkeypatch.setattr(IsNetCropSegmenter, "_predict", lambda self, box: calls.append(self.key) or original(self, box))
    args = ["predict", str(tmp_path / "photo.png"), "--box", "10", "5", "50", "35", "--checkpoint", str(refiner),
            "-o", str(tmp_path / "out.png"), "--cutout"]
    assert main([*args, "--stage1", "isnet", "--isnet-checkpoint", str(weights)]) == 0
    assert len(calls) == 1 and "isnet.pth" in calls[0]
    mask = np.asarray(Image.open(tmp_path / "out.png"))
    assert mask.shape == (40, 60) and (tmp_path / "photo_cutout.png").is_file()
    capsys.readouterr()
    assert main([*args, "--isnet-checkpoint", str(weights)]) == 2  # weights for a stage 1 not asked for
    assert "--stage1 isnet" in capsys.readouterr().err


def test_the_real_photo_check_runs_both_stage1s_and_the_whole_image_isnet():
    from types import SimpleNamespace

    from dissam.predictor import DisSam
    from dissam.repro.figures import photos_figure
    from dissam.repro.real_photos import PHOTOS, run_photos

    grabcut = GrabCutSegmenter()
    model = DisSam(build_refiner(in_ch=5, width=0.0625, coarse_prior=4.0), grabcut, size=64, device="cpu",
                   inference_path="eager")
    whole = SimpleNamespace(predict=lambda image: np.full(image.shape[:2], 255, np.uint8))
    results, table = run_photos(model, crop_stage1=segmenter(), isnet=whole, photos=PHOTOS[:2])
    assert model.segmenter is grabcut
    assert list(table["method"][:5]) == ["GrabCut (stage 1)", "DIS-SAM on GrabCut", "IS-Net crop (stage 1)",
                                         "DIS-SAM on IS-Net crop", "IS-Net, whole image (no box)"]
    assert len(table) == 10 and table["interior kept %"].notna().sum() <= 4
    by = table.set_index(["photo", "method"])
    assert by.loc[("coffee", "IS-Net crop (stage 1)"), "outside box %"] == 0  # bounded by the box
    x0, y0, x1, y1 = PHOTOS[0].box
    outside = 100 * (1 - (x1 - x0) * (y1 - y0) / (400 * 600))  # coffee is 400 x 600
    assert abs(by.loc[("coffee", "IS-Net, whole image (no box)"), "outside box %"] - outside) < 1e-6
    figure = photos_figure(results)
    assert len(figure.axes) == 2 * 7  # photo, 2 x (stage 1, refined), whole image, cut-out
