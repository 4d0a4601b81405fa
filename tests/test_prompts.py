"""Box prompts: tight boxes, clipping, jitter, the filled box channel, scaling between resolutions."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissam.data.prompts import BoxError, box_channel, box_from_mask, clip_box, jitter_box, scale_box


def test_box_from_mask_is_half_open_and_tight():
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:9] = 255
    assert box_from_mask(m) == (3, 2, 9, 5)
    assert box_from_mask(m > 0) == (3, 2, 9, 5)
    m[7, 11] = 100  # below the threshold
    assert box_from_mask(m) == (3, 2, 9, 5)
    with pytest.raises(BoxError, match="empty mask"):
        box_from_mask(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("box", [(5, 5, 5, 9), (5, 5, 9, 5), (9, 2, 3, 8), (2, 9, 8, 3)])
def test_empty_or_inverted_boxes_raise(box):
    with pytest.raises(BoxError, match="empty or inverted"):
        clip_box(box, 20, 20)


@pytest.mark.parametrize("box", [(20, 0, 30, 10), (-10, -10, 0, 5), (0, 25, 5, 40), (-5, 3, -1, 9)])
def test_boxes_outside_the_image_raise(box):
    with pytest.raises(BoxError, match="outside"):
        clip_box(box, 20, 20)


def test_clipping_rounds_outward_and_stays_in_the_image():
    assert clip_box((-3.2, 1.5, 25.0, 9.2), 20, 20) == (0, 1, 20, 10)
    assert clip_box((2, 3, 4, 5), 20, 20) == (2, 3, 4, 5)
    assert box_channel((-5, -5, 3, 2), 6, 6)[:2, :3].all() and box_channel((-5, -5, 3, 2), 6, 6).sum() == 6 * 255


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.integers(1, 80), st.data(), st.floats(0.0, 0.6), st.integers(0, 2 ** 32 - 1))
def test_jitter_stays_in_the_image(h, w, data, scale, seed):
    x0 = data.draw(st.integers(0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    y1 = data.draw(st.integers(y0 + 1, h))
    j = jitter_box((x0, y0, x1, y1), h, w, np.random.default_rng(seed), scale)
    assert 0 <= j[0] < j[2] <= w and 0 <= j[1] < j[3] <= h
    bw, bh = x1 - x0, y1 - y0  # each side moves by at most scale * size (plus outward rounding)
    assert abs(j[0] - x0) <= scale * bw + 1 and abs(j[2] - x1) <= scale * bw + 1
    assert abs(j[1] - y0) <= scale * bh + 1 and abs(j[3] - y1) <= scale * bh + 1
    assert jitter_box((x0, y0, x1, y1), h, w, np.random.default_rng(seed), 0.0) == (x0, y0, x1, y1)


def test_box_channel_fills_exactly_the_box():
    ch = box_channel((2, 1, 5, 4), 6, 7)
    assert ch.dtype == np.uint8 and ch.shape == (6, 7)
    expected = np.zeros((6, 7), np.uint8)
    expected[1:4, 2:5] = 255
    assert np.array_equal(ch, expected)
    with pytest.raises(BoxError):
        box_channel((8, 8, 9, 9), 6, 7)


@settings(max_examples=100, deadline=None)
@given(st.integers(8, 300), st.integers(8, 300), st.integers(8, 300), st.integers(8, 300), st.data())
def test_scaled_boxes_still_cover_the_object(h, w, h2, w2, data):
    x0 = data.draw(st.integers(0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    box = (x0, y0, data.draw(st.integers(x0 + 1, w)), data.draw(st.integers(y0 + 1, h)))
    s = scale_box(box, (h, w), (h2, w2))
    assert 0 <= s[0] < s[2] <= w2 and 0 <= s[1] < s[3] <= h2
    assert s[0] <= box[0] * w2 / w + 1e-9 and s[2] >= box[2] * w2 / w - 1e-9
    assert s[1] <= box[1] * h2 / h + 1e-9 and s[3] >= box[3] * h2 / h - 1e-9
