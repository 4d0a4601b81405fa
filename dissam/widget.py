"""Box-drag demo: drag a box on the image, see the stage-1 mask and the refined mask side by side.

Built on ``jupyter_bbox_widget.BBoxWidget`` (its ``bboxes`` trait holds the drawn boxes in image pixels
of the picture it shows) and plain ipywidgets, so it runs in JupyterLab 4 and in Voila. All the logic
sits in :class:`BoxDragDemo` and runs whenever ``bboxes`` changes, so tests drive it by setting that
trait, exactly as the browser does. Where widgets cannot render (Colab without its custom widget manager,
VS Code, a static viewer), :func:`side_by_side` draws the same two panels as one static image (notebook 07's
``BOX`` parameter). When the published IS-Net weights are in the cache (``dissam weights isnet``), a
choice above the views swaps stage 1 between the model's own (GrabCut on a CPU profile) and the IS-Net
crop (:mod:`dissam.coarse.isnet_crop`), built the first time it is chosen.
"""
from __future__ import annotations

import html
import io
import math
import time
from collections.abc import Mapping
from typing import Any

import cv2
import ipywidgets as widgets
import numpy as np
from jupyter_bbox_widget import BBoxWidget
from PIL import Image

from .coarse import build_coarse
from .data.folders import list_pairs
from .data.images import as_rgb
from .data.prompts import Box, BoxError
from .data.splits import VAL_SPLIT
from .model.checkpoint import CheckpointError
from .model.published import find_published_isnet
from .outputs import overlay
from .predictor import DisSam, MultiPrediction, Prediction, check_stage1_max_side
from .repro.config import Profile

__all__ = ["BoxDragDemo", "box_drag_demo", "boxes_from_bboxes", "demo_image", "mask_view", "png_bytes",
           "side_by_side", "stage1_options"]

COARSE_COLOUR = (255, 140, 0)  # stage 1: orange
REFINED_COLOUR = (0, 200, 90)  # stage 2: green
BOX_COLOUR = (255, 230, 0)


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 RGB or gray array -> PNG bytes (what ipywidgets.Image and BBoxWidget display)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_view(rgb: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int],
              boxes: list[Box] = (), scale: float = 1.0) -> np.ndarray:  # type: ignore[assignment]
    """The image dimmed, the mask painted over it in ``colour`` (:func:`dissam.outputs.overlay`), resized
    by ``scale`` (nearest when enlarging, so pixels stay crisp), then the boxes outlined at the display
    resolution."""
    out = overlay(rgb, mask, colour, alpha=0.7, dim=0.45)
    if scale != 1.0:
        h, w = rgb.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = cv2.resize(out, size, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
    thickness = max(2, round(max(out.shape[:2]) / 200))
    for x0, y0, x1, y1 in boxes:
        corners = [(round(x0 * scale), round(y0 * scale)), (round(x1 * scale) - 1, round(y1 * scale) - 1)]
        cv2.rectangle(out, corners[0], corners[1], BOX_COLOUR, thickness)
    return out


def boxes_from_bboxes(bboxes: list[dict[str, Any]], scale: float = 1.0) -> list[tuple[float, ...]]:
    """BBoxWidget's ``{x, y, width, height}`` dicts (display pixels) -> xyxy boxes in image pixels.
    Boxes under one image pixel wide or high are dropped: the widget sends a zero-area box on mousedown."""
    boxes = []
    for bbox in bboxes:
        try:
            x, y = float(bbox["x"]), float(bbox["y"])
            w, h = float(bbox["width"]), float(bbox["height"])
        except (KeyError, TypeError, ValueError):
            continue
        if w < 0:  # a box dragged leftwards or upwards, should the widget ever send one
            x, w = x + w, -w
        if h < 0:
            y, h = y + h, -h
        if w / scale < 1 or h / scale < 1:
            continue
        boxes.append((x / scale, y / scale, (x + w) / scale, (y + h) / scale))
    return boxes


def _display_scale(height: int, width: int, target: int) -> float:
    """Integer upscaling of small images (nearest, crisp pixels) or shrinking of large ones to ~target."""
    longest = max(height, width)
    if longest < target:
        return float(max(1, target // longest))
    return target / longest


Stage1Options = Mapping[str, Any]  # label -> a segmenter, or a function of no arguments that builds one


def stage1_options(model: DisSam) -> dict[str, Any]:
    """The stage-1 choices the demo offers for ``model``: its own stage 1 (labelled by kind), and the
    IS-Net crop when the published weights are found (built lazily: loading them takes a second)."""
    own = type(model.segmenter).__name__.removesuffix("Segmenter").replace("Sam", "SAM")
    options: dict[str, Any] = {own: model.segmenter}
    try:
        weights = find_published_isnet()
    except CheckpointError:
        return options
    options["IS-Net crop"] = lambda: build_coarse("isnet", checkpoint=weights, device=str(model.device))
    return options


class BoxDragDemo(widgets.VBox):
    """The demo widget: ``bbox`` (draw here), ``coarse_view`` and ``refined_view`` (ipywidgets.Image
    overlays), ``status`` (ipywidgets.HTML), ``stage1`` (ipywidgets.ToggleButtons, shown when there is a
    choice), ``last`` (the latest :class:`MultiPrediction` or None). ``stage1_max_side``: None keeps the
    model's setting; else it replaces it (0: full size, ``"auto"``: the default of the model's stage 1;
    see :class:`dissam.predictor.DisSam`). ``stage1``: the choices, label -> segmenter or builder
    (:func:`stage1_options`, the default); the first is the model's current stage 1."""

    def __init__(self, model: DisSam, image: Any, display_size: int = 384,
                 stage1_max_side: int | str | None = None, stage1: Stage1Options | None = None,
                 **kwargs: Any) -> None:
        self.model = model
        self._stage1: dict[str, Any] = dict(stage1 if stage1 is not None else stage1_options(model))
        if stage1_max_side is not None:
            check_stage1_max_side(stage1_max_side)
            model.stage1_max_side = stage1_max_side  # set_image below re-embeds at the new bound
        start = time.perf_counter()
        self.rgb = model.set_image(as_rgb(image))  # embeds once, here; every box reuses it
        self.embed_seconds = time.perf_counter() - start
        h, w = self.rgb.shape[:2]
        self.scale = _display_scale(h, w, display_size)
        self.display_hw = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
        self.last: MultiPrediction | None = None
        self.bbox = BBoxWidget(image_bytes=png_bytes(self._shown(self.rgb)), hide_buttons=True,
                               classes=[], label="")
        self.bbox.add_class("dissam-bbox")
        width = f"{self.display_hw[1]}px"
        self.coarse_view = widgets.Image(format="png", layout=widgets.Layout(width=width))
        self.refined_view = widgets.Image(format="png", layout=widgets.Layout(width=width))
        self.coarse_view.add_class("dissam-coarse")
        self.refined_view.add_class("dissam-refined")
        self.status = widgets.HTML()
        self.status.add_class("dissam-status")
        self.clear_button = widgets.Button(description="Clear boxes", icon="trash")
        self.clear_button.on_click(lambda _: setattr(self.bbox, "bboxes", []))
        self.stage1 = widgets.ToggleButtons(options=list(self._stage1), description="Stage 1:",
                                            layout=widgets.Layout(display="" if len(self._stage1) > 1 else "none"))
        self.stage1.add_class("dissam-stage1")
        self.stage1.observe(self._on_stage1, names="value")
        views = widgets.HBox([
            widgets.VBox([widgets.HTML("<b>Draw a box</b>"), self.bbox]),
            widgets.VBox([widgets.HTML("<b>Stage 1 (coarse)</b>"), self.coarse_view]),
            widgets.VBox([widgets.HTML("<b>DIS-SAM (refined)</b>"), self.refined_view]),
        ])
        # BBoxWidget always lists its label classes; one kind of object needs no class picker.
        style = widgets.HTML("<style>.dissam-bbox .classes {display: none}</style>")
        super().__init__([style, self.stage1, views, widgets.HBox([self.clear_button, self.status])], **kwargs)
        self.add_class("dissam-demo")
        self.bbox.observe(self._on_bboxes, names="bboxes")
        self.update()

    def _shown(self, image: np.ndarray) -> np.ndarray:
        h, w = self.display_hw
        if (h, w) == image.shape[:2]:
            return image
        interp = cv2.INTER_NEAREST if self.scale >= 1 else cv2.INTER_AREA
        return cv2.resize(image, (w, h), interpolation=interp)

    def _on_bboxes(self, change: dict[str, Any]) -> None:
        self.update(change["new"])

    def _on_stage1(self, change: dict[str, Any]) -> None:
        self.use_stage1(change["new"])

    def use_stage1(self, label: str) -> MultiPrediction | None:
        """Make the stage 1 labelled ``label`` the model's (building it the first time) and redraw."""
        if self.stage1.value != label:
            self.stage1.value = label  # its observer comes back here
            return self.last
        choice = self._stage1[label]
        if callable(choice) and not hasattr(choice, "set_image"):  # a builder, not a segmenter
            self.status.value = f"loading {html.escape(label)}..."
            choice = self._stage1[label] = choice()
        start = time.perf_counter()
        self.model.use_stage1(choice)
        self.embed_seconds = time.perf_counter() - start
        return self.update()

    def update(self, bboxes: list[dict[str, Any]] | None = None) -> MultiPrediction | None:
        """Predict every (non-degenerate) box of ``bboxes`` (default: the widget's) and redraw."""
        boxes = boxes_from_bboxes(self.bbox.bboxes if bboxes is None else bboxes, self.scale)
        if not boxes:
            self.last = None
            self._draw(None, None, [])
            self.status.value = "Drag a box around an object (several boxes: several objects)."
            return None
        try:
            result = self.model.predict_many(self.rgb, boxes)
        except BoxError as err:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return None
        self.last = result
        clipped = [o.box for o in result.objects]
        self._draw(result.coarse, result.mask, clipped)
        self.status.value = status_html(result, self.embed_seconds)
        return result

    def _draw(self, coarse: np.ndarray | None, refined: np.ndarray | None, boxes: list[Box]) -> None:
        self.coarse_view.value = png_bytes(mask_view(self.rgb, coarse, COARSE_COLOUR, boxes, self.scale))
        self.refined_view.value = png_bytes(mask_view(self.rgb, refined, REFINED_COLOUR, boxes, self.scale))


def _ms(seconds: float) -> str:
    return "-" if not math.isfinite(seconds) else f"{seconds * 1000:.0f} ms"


def status_html(result: MultiPrediction, embed_seconds: float = float("nan")) -> str:
    """Per-object pixel counts (stage 1 and refined) and timings, as a small HTML table."""
    rows = []
    for i, obj in enumerate(result.objects, start=1):
        coarse_px = int(np.count_nonzero(obj.coarse))
        rows.append(f"<tr><td>object {i}</td><td>box {obj.box}</td><td>stage 1: {coarse_px} px</td>"
                    f"<td>refined: {obj.pixels} px</td><td>embed {_ms(obj.timings['embed'])}, prompt "
                    f"{_ms(obj.timings['prompt'])}, refine {_ms(obj.timings['refine'])}</td></tr>")
    union = int(np.count_nonzero(result.mask))
    head = (f"<b>{len(result.objects)} object{'s' if len(result.objects) != 1 else ''}</b>, "
            f"union {union} px, total {_ms(result.timings['total'])} "
            f"(image embedded once: {_ms(embed_seconds)})")
    return f"<div>{head}</div><table style='font-size:90%'>{''.join(rows)}</table>"


def side_by_side(rgb: np.ndarray, prediction: Prediction | MultiPrediction, display_size: int = 384) -> np.ndarray:
    """Stage-1 and refined overlays next to each other: a static figure of one prediction, for viewers that
    cannot draw the widget. Each panel is exactly what the widget's views show for the same box and
    ``display_size`` (small images enlarged by an integer factor, large ones shrunk)."""
    objects = getattr(prediction, "objects", [prediction])
    boxes = [o.box for o in objects]
    scale = _display_scale(*rgb.shape[:2], display_size)
    coarse = mask_view(rgb, prediction.coarse, COARSE_COLOUR, boxes, scale)
    refined = mask_view(rgb, prediction.mask, REFINED_COLOUR, boxes, scale)
    gap = np.full((coarse.shape[0], max(2, coarse.shape[1] // 32), 3), 255, np.uint8)
    return np.hstack([coarse, gap, refined])


def demo_image(profile: Profile, index: int = 0, split: str = VAL_SPLIT) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, GT mask) of the ``index``-th image of the profile's ``split`` (DIS-VD: the validation set)."""
    pairs = list_pairs(profile.data_root / split)
    return pairs[index % len(pairs)].load()


def box_drag_demo(model: DisSam, image: Any, display_size: int = 384,
                  stage1_max_side: int | str | None = None, stage1: Stage1Options | None = None) -> BoxDragDemo:
    """The interactive demo for ``image`` (path or array): display it to use it. ``stage1_max_side`` and
    ``stage1``: see :class:`BoxDragDemo` (None: the model's own bound; :func:`stage1_options`)."""
    return BoxDragDemo(model, image, display_size=display_size, stage1_max_side=stage1_max_side, stage1=stage1)
