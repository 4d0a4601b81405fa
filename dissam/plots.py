"""Figures. ``sample_grid``: what a data split looks like, and what a box-prompted GrabCut makes of it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .coarse.grabcut import GrabCutSegmenter
from .data.folders import list_pairs
from .data.prompts import box_from_mask


def _spotlight(image: np.ndarray, mask: np.ndarray, dim: float = 0.22) -> np.ndarray:
    """Pixels of ``mask`` as they are, everything else darkened: shows what a mask marks, any object colour."""
    out = image.astype(np.float32) * dim
    sel = mask > 127
    out[sel] = image[sel]
    return out.astype(np.uint8)


def sample_grid(root: str | Path, split: str, n: int = 12, path: str | Path | None = None,
                with_grabcut: bool = True, iters: int = 3):
    """A figure of ``n`` images of ``root/split``: image | GT | GrabCut from the box (with IoU); each mask is
    shown by darkening everything outside it.

    The box is the tight box of the whole GT. Saved to ``path`` when given; returns the matplotlib Figure.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend
    from matplotlib.patches import Rectangle

    pairs = list_pairs(Path(root) / split)[:n]
    grabcut = GrabCutSegmenter(iters=iters)  # the stage-1 segmenter itself, so the grid shows what training sees
    cols = 3 if with_grabcut else 2
    fig = Figure(figsize=(2.4 * cols, 2.4 * len(pairs)))
    axes = fig.subplots(len(pairs), cols, squeeze=False)
    for row, pair in zip(axes, pairs):
        image, gt = pair.load()
        box = box_from_mask(gt)
        panels = [(image, pair.stem), (_spotlight(image, gt), "GT")]
        if with_grabcut:
            gc = grabcut(image, box)
            inter, union = np.logical_and(gc > 127, gt > 127).sum(), np.logical_or(gc > 127, gt > 127).sum()
            panels.append((_spotlight(image, gc), f"GrabCut IoU {inter / max(union, 1):.2f}"))
        for ax, (im, title) in zip(row, panels):
            ax.imshow(im, interpolation="nearest")
            x0, y0, x1, y1 = box
            if title != pair.stem:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=0.8))
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
