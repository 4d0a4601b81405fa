"""Stage-1 interface and the offline GrabCut segmenter."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dissam.coarse import GrabCutSegmenter, build_coarse
from dissam.repro.config import get_profile
from dissam.data.prompts import BoxError, box_from_mask
from dissam.repro.stages import build_stage1


def scene(shape: str, seed: int = 0, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A filled disk or rectangle in a bright colour on a dark noisy background, and its GT."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (size, size + 24, 3)).astype(np.uint8)
    gt = np.zeros(image.shape[:2], np.uint8)
    if shape == "disk":
        cv2.circle(gt, (size // 2 + 7, size // 2 - 5), size // 4, 255, -1)
    else:
        cv2.rectangle(gt, (30, 40), (size - 20, size - 50), 255, -1)
    colour = rng.integers(160, 256, 3)
    image[gt > 0] = np.clip(colour + rng.integers(-25, 25, (int((gt > 0).sum()), 3)), 0, 255).astype(np.uint8)
    return image, gt


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("shape,seed", [("disk", 0), ("disk", 1), ("rect", 2), ("rect", 3)])
def test_grabcut_finds_the_object_in_its_box(shape, seed):
    image, gt = scene(shape, seed)
    x0, y0, x1, y1 = box_from_mask(gt)
    seg = build_coarse("grabcut")
    seg.set_image(image)
    result = seg.predict((x0 - 6, y0 - 6, x1 + 6, y1 + 6))  # a user's loose box
    assert result.mask.dtype == np.uint8 and result.mask.shape == gt.shape
    assert set(np.unique(result.mask)) <= {0, 255}
    assert result.logits is None and result.score is None
    assert iou(result.mask, gt) > 0.5
    # a box alone would score much lower than GrabCut's answer on a disk
    if shape == "disk":
        filled = np.zeros_like(gt)
        filled[y0 - 6:y1 + 6, x0 - 6:x1 + 6] = 255
        assert iou(result.mask, gt) > iou(filled, gt) + 0.1


def test_grabcut_is_deterministic_and_counts_images():
    image, gt = scene("disk", 5)
    other, _ = scene("rect", 6)
    box = box_from_mask(gt)
    seg = GrabCutSegmenter(iters=2)
    seg.set_image(image)
    first = seg.predict(box).mask
    seg.set_image(other)
    seg.predict((10, 10, 90, 90))
    cv2.setRNGSeed(1234)  # someone else's use of cv2's RNG must not matter
    seg.set_image(image)
    assert np.array_equal(seg.predict(box).mask, first)
    assert np.array_equal(GrabCutSegmenter(iters=2)(image, box), first)
    assert seg.encoder_calls == 3  # one per set_image, none per box


def test_thin_and_full_and_clipped_boxes():
    image, gt = scene("rect", 7)
    h, w = gt.shape
    seg = GrabCutSegmenter(iters=1)
    seg.set_image(image)
    thin = seg.predict((20, 10, 21, 70)).mask  # 1 px wide: the filled box
    assert thin.sum() // 255 == 60 and thin[10:70, 20].all()
    full = seg.predict((0, 0, w, h)).mask  # no background outside: must still answer
    assert full.shape == (h, w)
    assert iou(full, gt) > 0.5
    outside = seg.predict((-50, -50, w + 50, h + 50)).mask  # clipped to the image
    assert np.array_equal(outside, full)
    for empty in [(30, 30, 30, 60), (40, 40, 10, 50), (w + 5, 0, w + 20, 10)]:
        with pytest.raises(BoxError):
            seg.predict(empty)


def test_input_checks():
    seg = GrabCutSegmenter()
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict((0, 0, 5, 5))
    with pytest.raises(ValueError, match="uint8"):
        seg.set_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        seg.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="iters"):
        GrabCutSegmenter(iters=0)


def test_keys_and_builders():
    assert build_coarse("grabcut").key == GrabCutSegmenter(iters=3).key
    assert build_coarse("grabcut", iters=2).key != build_coarse("grabcut", iters=3).key
    assert "opencv=" + cv2.__version__ in build_coarse("grabcut").key
    with pytest.raises(ValueError, match="unknown stage-1 kind"):
        build_coarse("sam2")
    with pytest.raises(ValueError, match="no checkpoint"):
        build_coarse("grabcut", checkpoint="x.pth")
    tiny = build_stage1(get_profile("tiny"))
    assert isinstance(tiny, GrabCutSegmenter) and tiny.iters == get_profile("tiny").coarse.grabcut_iters
    assert build_stage1(get_profile("smoke")).iters == 3


def test_paper_profile_without_checkpoint_says_where_to_get_it(tmp_path):
    profile = get_profile("paper")
    profile.coarse.checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError, match="sam_vit_b_01ec64.pth") as err:
        build_stage1(profile)
    assert "github.com/facebookresearch/segment-anything" in str(err.value)
