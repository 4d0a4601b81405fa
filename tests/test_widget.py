"""The box-drag demo at the Python level: set BBoxWidget's ``bboxes`` trait as the browser does and
check what the views and the status show."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dissam.predictor import DisSam
from dissam.widget import BoxDragDemo, box_drag_demo, boxes_from_bboxes, mask_view, side_by_side

H, W = 48, 64
OBJ = (8, 10, 28, 34)
OBJ2 = (40, 6, 58, 40)


class FilledBoxSegmenter:
    """Stage-1 stand-in: the filled box; counts image embeddings."""

    def __init__(self) -> None:
        self.encoder_calls, self.hw = 0, None

    def set_image(self, image):
        self.hw, self.encoder_calls = image.shape[:2], self.encoder_calls + 1

    def predict(self, box):
        mask = np.zeros(self.hw, np.uint8)
        mask[box[1]:box[3], box[0]:box[2]] = 255
        return SimpleNamespace(mask=mask, logits=None, score=None)


class RedRefiner(torch.nn.Module):
    """Stage-2 stand-in that works: red pixels inside the box channel."""

    def __init__(self) -> None:
        super().__init__()
        self.config = {"in_ch": 5, "width": 0.0}

    def forward(self, x):
        rgb = x[:, :3] + 0.5
        red = rgb[:, 0:1] - torch.maximum(rgb[:, 1:2], rgb[:, 2:3])
        return [torch.sigmoid(30 * (red - 0.3)) * x[:, 4:5]] * 6, []

    def predict(self, x):
        return self.forward(x)[0][0]


def scene():
    rgb = np.full((H, W, 3), (30, 90, 40), np.uint8)
    gts = []
    for x0, y0, x1, y1 in (OBJ, OBJ2):
        rgb[y0:y1, x0:x1] = (230, 20, 20)
        gt = np.zeros((H, W), bool)
        gt[y0:y1, x0:x1] = True
        gts.append(gt)
    return rgb, gts


def bbox(box, scale):
    x0, y0, x1, y1 = box
    return {"x": x0 * scale, "y": y0 * scale, "width": (x1 - x0) * scale, "height": (y1 - y0) * scale,
            "label": "object"}


def covers(mask, gt, frac=0.9):
    return (mask > 127)[gt].mean() >= frac and (mask > 127)[~gt].mean() < 0.05


@pytest.fixture()
def demo() -> BoxDragDemo:
    model = DisSam(RedRefiner(), FilledBoxSegmenter(), size=64, device="cpu")
    return box_drag_demo(model, scene()[0], display_size=256)


def test_boxes_from_bboxes_scales_and_drops_degenerate_boxes():
    raw = [{"x": 10, "y": 20, "width": 40, "height": 8}, {"x": 5, "y": 5, "width": 0, "height": 0},
           {"x": 50, "y": 50, "width": -20, "height": 10}, {"x": 1, "y": 1, "width": 3, "height": 30}, {"y": 3}]
    assert boxes_from_bboxes(raw, scale=4) == [(2.5, 5.0, 12.5, 7.0), (7.5, 12.5, 12.5, 15.0)]


def test_display_is_scaled_and_views_are_pngs(demo):
    assert demo.scale == 4 and demo.display_hw == (192, 256)  # 64 px wide -> 4x, crisp (integer)
    shown = np.asarray(Image.open(io.BytesIO(demo.bbox.image_bytes)))
    assert np.array_equal(shown[::4, ::4], scene()[0]) and shown.shape == (192, 256, 3)
    refined = np.asarray(Image.open(io.BytesIO(demo.refined_view.value)))
    assert refined.shape == (192, 256, 3) and demo.last is None
    assert "Drag a box" in demo.status.value


def test_dragging_a_box_shows_both_masks_and_covers_the_object(demo):
    _, (gt, _) = scene()
    before_refined, before_coarse = demo.refined_view.value, demo.coarse_view.value
    demo.bbox.bboxes = [bbox((OBJ[0] - 4, OBJ[1] - 4, OBJ[2] + 4, OBJ[3] + 4), demo.scale)]
    assert demo.refined_view.value != before_refined and demo.coarse_view.value != before_coarse
    obj = demo.last.objects[0]
    assert covers(obj.mask, gt) and obj.coarse.sum() > obj.mask.sum()  # refined: the object, not the box
    assert "object 1" in demo.status.value and f"refined: {obj.pixels} px" in demo.status.value
    # the refined view paints exactly the refined mask (green) over the dimmed image
    view = np.asarray(Image.open(io.BytesIO(demo.refined_view.value)))
    expected = mask_view(demo.rgb, obj.mask, (0, 200, 90), [obj.box], scale=demo.scale)
    assert np.array_equal(view, expected) and view.shape == (192, 256, 3)
    green = np.all(view[::4, ::4] == mask_view(demo.rgb, obj.mask, (0, 200, 90))[..., :], axis=2)
    assert green.mean() > 0.9  # away from the box outline, the display is the mask overlay, upscaled


def test_static_figure_shows_the_widgets_two_panels(demo):
    """Where the widget cannot render, side_by_side(image, model.predict(image, box)) is the figure: the
    widget's stage-1 and refined views for the same box, next to each other."""
    box = (OBJ[0] - 4, OBJ[1] - 4, OBJ[2] + 4, OBJ[3] + 4)
    demo.bbox.bboxes = [bbox(box, demo.scale)]
    coarse = np.asarray(Image.open(io.BytesIO(demo.coarse_view.value)))
    refined = np.asarray(Image.open(io.BytesIO(demo.refined_view.value)))
    figure = side_by_side(scene()[0], demo.model.predict(scene()[0], box), display_size=256)
    assert figure.shape[0] == coarse.shape[0] and figure.shape[1] > 2 * coarse.shape[1]
    assert np.array_equal(figure[:, :coarse.shape[1]], coarse)
    assert np.array_equal(figure[:, -refined.shape[1]:], refined)
    big = np.kron(scene()[0], np.ones((40, 40, 1), np.uint8))  # 1920 x 2560: shrunk, like the widget
    shrunk = side_by_side(big, demo.model.predict(big, tuple(40 * v for v in box)))
    assert shrunk.shape[0] == 288 and shrunk.shape[1] < 2 * 384 + 40


def test_zero_area_mousedown_box_is_ignored(demo):
    demo.bbox.bboxes = [bbox(OBJ, demo.scale)]
    shown, last = demo.refined_view.value, demo.last
    demo.bbox.bboxes = [bbox(OBJ, demo.scale), {"x": 100, "y": 100, "width": 0, "height": 0, "label": ""}]
    assert len(demo.last.objects) == 1 and np.array_equal(demo.last.mask, last.mask)
    assert demo.refined_view.value == shown
    demo.bbox.bboxes = [{"x": 3, "y": 3, "width": 0, "height": 0}]
    assert demo.last is None and "Drag a box" in demo.status.value


def test_two_boxes_give_two_objects_and_one_embedding(demo):
    _, (gt1, gt2) = scene()
    demo.bbox.bboxes = [bbox(OBJ, demo.scale), bbox(OBJ2, demo.scale)]
    result = demo.last
    assert len(result.objects) == 2
    assert covers(result.objects[0].mask, gt1) and covers(result.objects[1].mask, gt2)
    assert covers(result.mask, gt1 | gt2)
    assert "2 objects" in demo.status.value and "object 2" in demo.status.value
    demo.bbox.bboxes = [bbox(OBJ2, demo.scale)]  # move / remove boxes: still the same embedding
    assert demo.model.segmenter.encoder_calls == 1
    demo.clear_button.click()
    assert demo.bbox.bboxes == [] and demo.last is None


def test_large_images_are_shown_shrunk_and_boxes_mapped_back():
    big = np.kron(scene()[0], np.ones((10, 10, 1), np.uint8))  # 480 x 640
    model = DisSam(RedRefiner(), FilledBoxSegmenter(), size=64, device="cpu")
    demo = box_drag_demo(model, big, display_size=320)
    assert demo.scale == 0.5 and demo.display_hw == (240, 320)
    demo.bbox.bboxes = [bbox(tuple(10 * v for v in OBJ), demo.scale)]
    assert demo.last.objects[0].box == tuple(10 * v for v in OBJ)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """The tiny profile's real refiner (trained here when missing, shared with the browser test's folder)
    and GrabCut stage 1, with one DIS-VD scene."""
    import os
    from pathlib import Path

    from dissam.repro import config
    from dissam.repro.pipeline import ensure_refiner
    from dissam.widget import demo_image

    runs = Path(os.environ.get("DISSAM_TEST_RUNS") or tmp_path_factory.getbasetemp() / "dissam-runs-tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config, "RUNS_ROOT", runs)
        profile = config.get_profile("tiny")
        model = DisSam.from_checkpoint(ensure_refiner(profile, progress=False))
        image, gt = demo_image(profile)
    return model, image, gt


def test_real_tiny_model_end_to_end(tiny_model):
    """The real path (trained checkpoint, GrabCut, optimised refiner). The tiny profile trains 4
    iterations, so its refiner's output is not asserted to be good: only that it follows the box."""
    from dissam.data.prompts import box_from_mask

    model, image, gt = tiny_model
    demo = box_drag_demo(model, image)
    x0, y0, x1, y1 = box_from_mask(gt)
    before = demo.refined_view.value
    demo.bbox.bboxes = [bbox((x0 - 1, y0 - 1, x1 + 1, y1 + 1), demo.scale)]
    obj = demo.last.objects[0]
    assert demo.refined_view.value != before and obj.box == (x0 - 1, y0 - 1, x1 + 1, y1 + 1)
    assert (obj.coarse > 127)[gt > 127].mean() > 0.9  # GrabCut's coarse mask holds the object
    assert set(np.unique(obj.mask)) <= {0, 255} and obj.prob.shape == gt.shape
    half = (x0, y0, (x0 + x1) // 2 + 1, y1)
    demo.bbox.bboxes = [bbox(half, demo.scale)]
    assert not np.array_equal(demo.last.objects[0].prob, obj.prob)  # the refiner reads box and mask
    assert model.segmenter.encoder_calls == 1


class ShrunkBoxSegmenter(FilledBoxSegmenter):
    """A second stage 1: the box shrunk by a quarter of its size on each side."""

    def predict(self, box):
        x0, y0, x1, y1 = box
        dx, dy = (x1 - x0) // 4, (y1 - y0) // 4
        return super().predict((x0 + dx, y0 + dy, x1 - dx, y1 - dy))


def test_the_stage1_choice_swaps_stage1_builds_it_once_and_redraws():
    first, built = FilledBoxSegmenter(), []
    model = DisSam(RedRefiner(), first, size=64, device="cpu")
    choices = {"Filled": first, "Shrunk": lambda: built.append(ShrunkBoxSegmenter()) or built[-1]}
    demo = box_drag_demo(model, scene()[0], display_size=256, stage1=choices)
    assert demo.stage1.options == ("Filled", "Shrunk") and demo.stage1.layout.display != "none"
    demo.bbox.bboxes = [bbox(OBJ, demo.scale)]
    filled, view = demo.last.objects[0].coarse, demo.coarse_view.value
    demo.stage1.value = "Shrunk"  # as a click does
    assert model.segmenter is built[0] and built[0].encoder_calls == 1
    assert demo.last.objects[0].coarse.sum() < filled.sum() and demo.coarse_view.value != view
    demo.use_stage1("Filled")
    demo.use_stage1("Shrunk")
    assert len(built) == 1 and built[0].encoder_calls == 2 and demo.stage1.value == "Shrunk"


def test_without_the_published_weights_the_demo_offers_no_choice(demo):
    assert demo.stage1.options == ("FilledBox",) and demo.stage1.layout.display == "none"


def test_with_the_published_weights_the_demo_offers_the_isnet_crop(tmp_path, monkeypatch):
    from dissam.widget import stage1_options

    weights = tmp_path / "isnet-general-use.pth"
    weights.write_bytes(b"not loaded until chosen")
    monkeypatch.setenv("DISSAM_ISNET_CHECKPOINT", str(weights))
    model = DisSam(RedRefiner(), FilledBoxSegmenter(), size=64, device="cpu")
    options = stage1_options(model)
    assert list(options) == ["FilledBox", "IS-Net crop"] and options["FilledBox"] is model.segmenter
    assert callable(options["IS-Net crop"]) and not hasattr(options["IS-Net crop"], "set_image")
