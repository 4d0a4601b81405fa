"""Box-crop inference: the crop window's geometry (margin, border, minimum size, square), and DisSam in
``refine_region="box"`` mode (full-size outputs, zeros outside the window, the box relative to the crop,
exactly the whole-image result when the window is the whole image)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dissam.variant import Variant
from dissam.data.prompts import BoxError, box_from_mask, crop_window
from dissam.predictor import DisSam


# ---- the window ----
def test_margin_is_a_fraction_of_the_box_on_each_side():
    assert crop_window((40, 40, 60, 60), 200, 200, 0.25) == (35, 65, 35, 65)
    assert crop_window((40, 40, 60, 60), 200, 200, 0.0) == (40, 60, 40, 60)
    assert crop_window((40, 40, 60, 60), 200, 200, 1.0) == (20, 80, 20, 80)


def test_square_widens_the_short_side_and_non_square_keeps_the_box_aspect():
    box = (10, 50, 110, 70)  # 100 wide, 20 high
    assert crop_window(box, 200, 200, 0.0) == (10, 110, 10, 110)
    assert crop_window(box, 200, 200, 0.0, square=False) == (50, 70, 10, 110)
    assert crop_window(box, 200, 200, 0.1, square=False) == (48, 72, 0, 120)


def test_a_window_crossing_the_border_is_shifted_inside_keeping_its_size():
    assert crop_window((0, 0, 20, 20), 100, 100, 0.5) == (0, 40, 0, 40)
    assert crop_window((80, 90, 100, 100), 100, 100, 0.5) == (60, 100, 60, 100)
    assert crop_window((-30, 10, 20, 30), 100, 100, 0.0) == (10, 30, 0, 20)  # the box is clipped first


def test_minimum_side_and_windows_larger_than_the_image():
    y0, y1, x0, x1 = crop_window((98, 98, 102, 102), 200, 200, 0.1, min_side=64)
    assert (y1 - y0, x1 - x0) == (64, 64) and y0 <= 98 and y1 >= 102 and x0 <= 98 and x1 >= 102
    assert crop_window((98, 10, 102, 14), 50, 300, 0.1, min_side=64) == (0, 50, 68, 132)  # whole axis
    assert crop_window((100, 10, 200, 40), 50, 300, 0.1) == (0, 50, 90, 210)  # not square: 50 px high
    assert crop_window((10, 10, 20, 20), 30, 40, 5.0) == (0, 30, 0, 40)


def test_bad_margins_and_boxes_raise():
    with pytest.raises(ValueError, match="margin"):
        crop_window((1, 1, 5, 5), 10, 10, -0.1)
    with pytest.raises(ValueError, match="margin"):
        crop_window((1, 1, 5, 5), 10, 10, float("nan"))
    with pytest.raises(BoxError, match="outside"):
        crop_window((20, 20, 30, 30), 10, 10, 0.1)


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 120), w=st.integers(1, 120), data=st.data(),
       margin=st.floats(0, 2), min_side=st.integers(0, 80), square=st.booleans())
def test_window_contains_the_box_stays_inside_and_has_its_size(h, w, data, margin, min_side, square):
    x0 = data.draw(st.integers(0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    y1 = data.draw(st.integers(y0 + 1, h))
    wy0, wy1, wx0, wx1 = crop_window((x0, y0, x1, y1), h, w, margin, min_side=min_side, square=square)
    assert 0 <= wy0 <= y0 and y1 <= wy1 <= h and 0 <= wx0 <= x0 and x1 <= wx1 <= w
    sx = (x1 - x0) * (1 + 2 * margin)
    sy = (y1 - y0) * (1 + 2 * margin)
    if square:
        sx = sy = max(sx, sy)
    for got, want, limit in ((wy1 - wy0, sy, h), (wx1 - wx0, sx, w)):
        assert got >= min(limit, want - 1e-6) and got >= min(limit, min_side)  # margin and minimum kept
        assert got <= max(want + 1, min_side)  # no more than asked (up to rounding)
    if square and max(sx, min_side) + 1 <= min(h, w):
        assert wy1 - wy0 == wx1 - wx0


# ---- DisSam in box mode ----
class BoxSegmenter:
    """Stage-1 stand-in: the filled box, or a filled ``inset`` px inside it (a tighter coarse mask)."""

    def __init__(self, inset: int = 0) -> None:
        self.inset, self.hw = inset, None

    def set_image(self, image: np.ndarray) -> None:
        self.hw = image.shape[:2]

    def predict(self, box):
        mask = np.zeros(self.hw, np.uint8)
        x0, y0, x1, y1 = box
        k = self.inset
        mask[y0 + k:y1 - k, x0 + k:x1 - k] = 255
        return SimpleNamespace(mask=mask, logits=None, score=0.5)


class ChannelRefiner(torch.nn.Module):
    """Stage-2 stand-in: returns one input channel as the probability (4: the box; 0: red) or a constant."""

    def __init__(self, channel: int | None = 4, value: float = 0.9) -> None:
        super().__init__()
        self.config = {"in_ch": 5, "width": 0.0}
        self.channel, self.value = channel, value

    def forward(self, x: torch.Tensor):
        if self.channel is None:
            prob = torch.full_like(x[:, :1], self.value)
        elif self.channel == 0:
            rgb = x[:, :3] + 0.5
            red = rgb[:, 0:1] - torch.maximum(rgb[:, 1:2], rgb[:, 2:3])
            prob = torch.sigmoid(30 * (red - 0.3)) * x[:, 4:5]
        else:
            prob = x[:, self.channel:self.channel + 1]
        return [prob] * 6, []

    def predict(self, x: torch.Tensor) -> torch.Tensor:  # maps[0] alone, as ISNetDIS.predict
        return self.forward(x)[0][0]


def noisy_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_box_mode_returns_full_size_outputs_with_zeros_outside_the_window():
    h, w, box = 300, 400, (150, 100, 210, 140)
    model = DisSam(ChannelRefiner(None), BoxSegmenter(), size=32, device="cpu", refine_region="box",
                   crop_margin=0.25)
    pred = model.predict(noisy_image(h, w), box)
    y0, y1, x0, x1 = crop_window(box, h, w, 0.25, min_side=32)
    assert (y0, y1, x0, x1) == (75, 165, 135, 225)
    for out in (pred.prob, pred.mask, pred.coarse):
        assert out.shape == (h, w) and out.dtype == np.uint8
    inside = np.zeros((h, w), bool)
    inside[y0:y1, x0:x1] = True
    assert (pred.prob[~inside] == 0).all() and (pred.mask[~inside] == 0).all()
    assert (pred.prob[inside] == round(0.9 * 255)).all() and (pred.mask[inside] == 255).all()
    assert pred.box == box and pred.coarse[100:140, 150:210].all()  # stage 1 still sees the whole image


def test_box_mode_tells_the_refiner_the_box_relative_to_the_crop():
    h, w, box = 256, 256, (100, 120, 164, 152)
    model = DisSam(ChannelRefiner(4), BoxSegmenter(), size=64, device="cpu", refine_region="box",
                   crop_margin=0.5)
    prob = model.predict(noisy_image(h, w), box).prob  # the box channel, pasted back: the box itself
    assert box_from_mask(prob) == box
    assert (prob[122:150, 102:162] == 255).all()


def test_box_mode_window_follows_the_sam_tight_box():
    h, w, box = 300, 300, (60, 60, 240, 240)
    authors = Variant.authors_code()
    model = DisSam(ChannelRefiner(None), BoxSegmenter(inset=50), size=32, device="cpu", variant=authors,
                   refine_region="box", crop_margin=0.0)
    pred = model.predict(noisy_image(h, w), box)
    assert box_from_mask(pred.prob) == (110, 110, 190, 190)  # the tight box of stage 1's mask


def test_a_window_covering_the_image_gives_exactly_the_whole_image_result():
    rng = np.random.default_rng(3)
    rgb = noisy_image(90, 120, seed=3) // 3
    rgb[30:60, 40:80] = (220, 30, 30)
    rgb[45, 20:100] = (230, 20, 20)  # a thin line reaching out of the box
    rgb[rng.random((90, 120)) < 0.05] = (200, 40, 40)
    box = (35, 25, 85, 65)
    whole = DisSam(ChannelRefiner(0), BoxSegmenter(inset=2), size=48, device="cpu")
    crop = DisSam(ChannelRefiner(0), BoxSegmenter(inset=2), size=48, device="cpu", refine_region="box",
                  crop_margin=3.0)
    assert crop_window(box, 90, 120, 3.0, min_side=48) == (0, 90, 0, 120)
    a, b = whole.predict(rgb, box), crop.predict(rgb, box)
    for key in ("prob", "mask", "coarse"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    assert a.prob.max() > 200


def test_box_mode_keeps_a_structure_the_whole_image_shrink_loses():
    h = w = 480
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 1] = 70
    rgb[200:260, 238:240] = (230, 20, 20)  # a 2 px red wire: 0.27 px at 64 px
    gt = np.zeros((h, w), np.uint8)
    gt[200:260, 238:240] = 255
    box = (228, 195, 250, 265)
    iou = {}
    for region in ("image", "box"):
        model = DisSam(ChannelRefiner(0), BoxSegmenter(), size=64, device="cpu", refine_region=region)
        mask = model.predict(rgb, box).mask > 0
        iou[region] = (mask & (gt > 0)).sum() / max(1, (mask | (gt > 0)).sum())
    assert iou["box"] > 0.9 > iou["image"] + 0.3


def test_bad_refine_region_or_margin_raises():
    with pytest.raises(ValueError, match="refine_region"):
        DisSam(ChannelRefiner(), BoxSegmenter(), size=32, device="cpu", refine_region="crop")
    with pytest.raises(ValueError, match="crop_margin"):
        DisSam(ChannelRefiner(), BoxSegmenter(), size=32, device="cpu", crop_margin=-1)
    model = DisSam(ChannelRefiner(), BoxSegmenter(), size=32, device="cpu")
    model.refine_region = "tile"
    with pytest.raises(ValueError, match="refine_region"):
        model.predict(noisy_image(40, 40), (5, 5, 20, 20))
