"""Evaluation entry points: pairs, a prediction folder, a predictor; summaries in long format."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from dissam.data.images import DataError
from dissam.data.splits import TEST_SPLITS, VAL_SPLIT
from dissam.evaluation import evaluate_folder, evaluate_pairs, evaluate_predictor, read_prediction, summarize
from dissam.metrics import METRICS, DISMetrics

REF = Path(__file__).resolve().parent / "reference" / "metrics"
EXPECTED = json.loads((REF / "expected.json").read_text())
NAMES = [r["name"] for r in EXPECTED["per_image"]]


def _gt(name: str) -> np.ndarray:
    return cv2.imread(str(REF / f"{name}_gt.png"), cv2.IMREAD_GRAYSCALE)


def _pred(name: str) -> np.ndarray:
    return cv2.imread(str(REF / f"{name}_pred.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture()
def split(tmp_path: Path) -> tuple[Path, Path]:
    """A DIS5K-like split (im/ + gt/) of the reference pairs and a folder of their predictions."""
    data, preds = tmp_path / VAL_SPLIT, tmp_path / "preds"
    for sub in ("im", "gt"):
        (data / sub).mkdir(parents=True)
    preds.mkdir()
    for name in NAMES:
        gt = _gt(name)
        cv2.imwrite(str(data / "im" / f"{name}.jpg"), np.dstack([gt] * 3))
        shutil.copy(REF / f"{name}_gt.png", data / "gt" / f"{name}.png")
        shutil.copy(REF / f"{name}_pred.png", preds / f"{name}.png")
    return preds, data


def _assert_reference(records: pd.DataFrame, summary: dict) -> None:
    assert list(records.columns) == ["name", *METRICS]
    assert list(records["name"]) == NAMES
    for rec, row in zip(EXPECTED["per_image"], records.to_dict("records")):
        for k in METRICS:
            assert row[k] == pytest.approx(rec[k], abs=1e-9), (rec["name"], k)
    for k in METRICS:
        assert summary[k] == pytest.approx(EXPECTED["dataset"][k], abs=1e-9), k


def test_evaluate_pairs_from_a_generator():
    records, summary = evaluate_pairs(((n, _pred(n), _gt(n)) for n in NAMES), progress=False)
    _assert_reference(records, summary)
    assert set(summary) == set(METRICS)


def test_evaluate_pairs_in_threads_gives_the_same_result():
    items = [(n, _pred(n), _gt(n)) for n in NAMES]
    serial = evaluate_pairs(items, progress=False)
    threaded = evaluate_pairs(items, progress=False, workers=2)
    pd.testing.assert_frame_equal(serial[0], threaded[0])
    assert serial[1] == threaded[1]


def test_evaluate_pairs_names_the_failing_item():
    items = [("ok", _pred(NAMES[0]), _gt(NAMES[0])), ("bad", np.zeros((5, 5), np.uint8), _gt(NAMES[0]))]
    with pytest.raises(ValueError, match=r"bad: shape mismatch"):
        evaluate_pairs(items, progress=False)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_pairs([], progress=False)


def test_evaluate_folder_matches_reference_and_caches_skeletons(split, tmp_path):
    preds, data = split
    records, summary = evaluate_folder(preds, data, progress=False, skeleton_cache_dir=tmp_path / "skel")
    _assert_reference(records, summary)
    assert len(list((tmp_path / "skel").glob("*.npy"))) == len({_gt(n).tobytes() for n in NAMES})
    again, summary2 = evaluate_folder(preds, data, progress=False, skeleton_cache_dir=tmp_path / "skel")
    assert summary2 == summary


def test_evaluate_folder_missing_predictions_are_listed(split):
    preds, data = split
    for name in NAMES[2:5]:
        (preds / f"{name}.png").unlink()
    (preds / "extra_without_gt.png").write_bytes((preds / f"{NAMES[0]}.png").read_bytes())
    with pytest.raises(DataError, match="3 GT mask") as err:
        evaluate_folder(preds, data, progress=False)
    for name in NAMES[2:5]:
        assert name in str(err.value)


def test_evaluate_folder_with_gt_only_and_size_checks(split, tmp_path):
    preds, data = split
    shutil.rmtree(data / "im")  # a folder of GT masks alone is enough
    records, _ = evaluate_folder(preds, data, progress=False)
    assert len(records) == len(NAMES)
    small = cv2.resize(_pred(NAMES[0]), (160, 120))
    cv2.imwrite(str(preds / f"{NAMES[0]}.png"), small)
    with pytest.raises(ValueError, match=f"{NAMES[0]}: shape mismatch"):
        evaluate_folder(preds, data, progress=False)
    resized, _ = evaluate_folder(preds, data, progress=False, resize=True)
    assert resized["maxF"].iloc[0] != records["maxF"].iloc[0]
    with pytest.raises(DataError, match="no GT folder"):
        evaluate_folder(preds, tmp_path / "nowhere", progress=False)


def test_read_prediction_keeps_faint_maps(tmp_path):
    faint = np.zeros((6, 8), np.uint8)
    faint[2:4, 2:5] = 1
    cv2.imwrite(str(tmp_path / "p.png"), faint)
    np.testing.assert_array_equal(read_prediction(tmp_path / "p.png"), faint)  # not rescaled to 255
    with pytest.raises(DataError):
        read_prediction(tmp_path / "missing.png")


def test_evaluate_predictor_writes_predictions_and_csv(split, tmp_path):
    preds, data = split
    calls = []

    def predict(pair):
        calls.append(pair.stem)
        return _pred(pair.stem).astype(np.float32) / 255  # float maps are fine

    out, csv = tmp_path / "written", tmp_path / "per_image.csv"
    records, summary = evaluate_predictor(predict, data, progress=False, pred_dir=out, csv_path=csv)
    assert calls == NAMES
    _assert_reference(records, summary)
    for name in NAMES:
        np.testing.assert_array_equal(read_prediction(out / f"{name}.png"), _pred(name))
    assert list(pd.read_csv(csv)["name"]) == NAMES


def test_summarize_long_format():
    m = DISMetrics()
    m.step(_pred(NAMES[0]), _gt(NAMES[0]))
    s = m.results()
    df = summarize({"A": {VAL_SPLIT: s, TEST_SPLITS[0]: s}, "B": {VAL_SPLIT: {**s, "extra": 1.0}}})
    assert list(df.columns) == ["method", "dataset", *METRICS]
    assert df[["method", "dataset"]].values.tolist() == [["A", VAL_SPLIT], ["A", TEST_SPLITS[0]], ["B", VAL_SPLIT]]
    assert df["HCE"].tolist() == [s["HCE"]] * 3
