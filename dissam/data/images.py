"""One rule for bringing any image array to uint8, used wherever an image enters dissam (files read by
:mod:`dissam.data.folders`, arrays and PIL images given to the predictor).

- uint8 is kept as it is; bool becomes 0/255;
- 16-bit data becomes ``round(x / 257)``, so 0 -> 0, 65535 -> 255 and ``257 k -> k`` exactly. uint16
  arrays are 16-bit whatever their values; wider integers (PIL reads 16-bit PNGs as int32, mode ``I``)
  are 16-bit when a value exceeds 255, else taken as 8-bit values;
- floats are 0..1 (scaled by 255) when their maximum is at most 1, else 0..255; NaN counts as 0; the
  result is rounded to the nearest integer (halves to even, as ``np.round``, the rule
  :func:`dissam.metrics.to_uint8` quantises float predictions with);
- everything is clipped to 0..255.
"""
from __future__ import annotations

import numpy as np


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """``arr`` (any shape) as uint8 by the rules above; raises ValueError for other dtypes."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.floating):
        values = np.nan_to_num(arr.astype(np.float64))
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        return np.round(np.clip(values * scale, 0, 255)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.uint16 or arr.max(initial=0) > 255:
            wide = np.clip(arr, 0, 65535).astype(np.uint32)
            return ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {arr.dtype}")
