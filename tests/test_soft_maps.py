"""benchmarks/soft_maps.py re-scores refined maps made sharper; the diagnosis of the wF / mean E
gap (docs/smoke-results.md) rests on it keeping every decision at 0.5 while moving each pixel away from it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SPEC = importlib.util.spec_from_file_location("soft_maps", Path(__file__).resolve().parents[1] / "benchmarks" / "soft_maps.py")
soft_maps = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(soft_maps)


def test_sharper_maps_keep_their_decisions_and_move_away_from_one_half():
    pred = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_allclose(soft_maps.sharpened(pred, 1.0), pred, atol=1)  # T = 1: the map itself
    sharp = soft_maps.sharpened(pred, 2.0).astype(int)
    assert np.array_equal(sharp >= 128, pred >= 128)
    assert np.all(np.abs(sharp - 127.5) >= np.abs(pred.astype(int) - 127.5) - 1)
    assert sharp[pred == 230][0] == 252  # p = 0.902 (odds 9.2) -> odds 84.6 -> 0.988
    hard = soft_maps.sharpened(pred, float("inf"))
    assert set(np.unique(hard)) == {0, 255} and np.array_equal(hard == 255, pred >= 128)
