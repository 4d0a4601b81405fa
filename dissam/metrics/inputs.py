"""Input conventions shared by the six metrics: any prediction/GT pair becomes (uint8 prediction, bool GT).

The reference tools read PNG files, so everything is brought to what such a file holds:
- uint8 arrays are taken as they are (0..255);
- bool arrays become 0/255;
- float arrays must lie in [0, 1] and are quantised as a PNG writer would: ``round(x * 255)``
  (the same rule as :func:`dissam.data.images.read_mask` applies to float images);
- other integer arrays must lie in 0..255.
The GT is binarised at ``> 128`` of that uint8 form (the convention of pysodmetrics and the official DIS
evaluation). A ``[H, W, 1]`` array is squeezed; colour images are refused (convert to grayscale first).
"""
from __future__ import annotations

import cv2
import numpy as np

GT_THRESHOLD = 128  # gt > 128 is foreground; also the HCE binarisation of the raw prediction


def checked_map_uint8(arr: np.ndarray, what: str = "prediction") -> np.ndarray:
    """``arr`` as a C-contiguous uint8 ``[H, W]`` array (see the module docstring for the rules)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) map, got shape {arr.shape}"
                         + (" (convert colour images to grayscale first)" if arr.ndim == 3 else ""))
    if arr.size == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.view(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise ValueError(f"float {what} must lie in [0, 1], got values in [{lo}, {hi}]")
        return np.round(arr.astype(np.float64) * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(np.min(arr)), int(np.max(arr))
        if lo < 0 or hi > 255:
            raise ValueError(f"integer {what} must lie in 0..255, got values in [{lo}, {hi}]")
        return arr.astype(np.uint8)
    raise ValueError(f"unsupported dtype {arr.dtype} for {what}")


def to_gt_mask(gt: np.ndarray) -> np.ndarray:
    """Binary GT (bool ``[H, W]``): ``gt > 128`` of its uint8 form; bool input is kept as it is."""
    gt = np.asarray(gt)
    if gt.dtype == bool and gt.ndim == 2:
        return np.ascontiguousarray(gt)
    return checked_map_uint8(gt, "gt") > GT_THRESHOLD


def prepare_pair(pred: np.ndarray, gt: np.ndarray, resize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 prediction, bool GT) of the same shape. A shape mismatch is an error unless ``resize``:
    then the prediction is resized to the GT's size (bilinear), since metrics are taken at GT resolution."""
    pred_u8 = checked_map_uint8(pred, "prediction")
    gt_b = to_gt_mask(gt)
    if pred_u8.shape != gt_b.shape:
        if not resize:
            raise ValueError(f"shape mismatch: prediction {pred_u8.shape} vs GT {gt_b.shape}; metrics are taken "
                             "at the GT's resolution (resize the prediction, or pass resize=True)")
        pred_u8 = cv2.resize(pred_u8, (gt_b.shape[1], gt_b.shape[0]), interpolation=cv2.INTER_LINEAR)
    return pred_u8, gt_b
