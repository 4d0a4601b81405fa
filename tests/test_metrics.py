"""The six DIS metrics against the reference values, input conventions, edge cases and the skeleton cache."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from dissam.metrics import METRICS, DISMetrics, SkeletonCache, image_metrics
from dissam.metrics.hce import gt_skeleton, hce, hce_regions
from dissam.metrics.weighted_f import gaussian_1d

REF = Path(__file__).resolve().parent / "reference" / "metrics"
EXPECTED = json.loads((REF / "expected.json").read_text())
FIVE = ("maxF", "wF", "MAE", "S", "meanE")

pysod = pytest.importorskip("py_sod_metrics")


def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    return (cv2.imread(str(REF / f"{name}_pred.png"), cv2.IMREAD_GRAYSCALE),
            cv2.imread(str(REF / f"{name}_gt.png"), cv2.IMREAD_GRAYSCALE))


def reference_five(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """pysodmetrics 1.6.2 with its defaults, one image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f, w, a, s, e = (pysod.Fmeasure(), pysod.WeightedFmeasure(), pysod.MAE(), pysod.Smeasure(),
                         pysod.Emeasure())
        for m in (f, w, a, s, e):
            m.step(pred, gt)
    return {"maxF": float(np.max(f.changeable_fms[0])), "wF": float(w.weighted_fms[0]), "MAE": float(a.maes[0]),
            "S": float(s.sms[0]), "meanE": float(np.mean(e.changeable_ems[0]))}


def pysod_hce(pred: np.ndarray, gt: np.ndarray) -> float:
    """pysodmetrics' HCE fed as docs/conventions.md says: (pred > 128) as float, gt > 128, normalize=False."""
    h = pysod.HumanCorrectionEffortMeasure()
    h.step((pred > 128).astype(np.float64), gt > 128, normalize=False)
    return float(h.hces[0])


def assert_close(ours: dict, ref: dict, keys=FIVE, tol: float = 1e-9) -> None:
    for k in keys:
        a, b = ours[k], ref[k]
        assert (np.isnan(a) and np.isnan(b)) or abs(a - b) <= tol, (k, a, b)


# ----------------------------------------------------------------------------- reference values
@pytest.fixture(scope="module")
def reference_run() -> DISMetrics:
    m = DISMetrics()
    for rec in EXPECTED["per_image"]:
        m.step(*_load(rec["name"]), name=rec["name"])
    return m


def test_reference_per_image(reference_run):
    records = {r["name"]: r for r in reference_run.records()}
    assert list(records) == [r["name"] for r in EXPECTED["per_image"]]
    for rec in EXPECTED["per_image"]:
        assert_close(records[rec["name"]], rec)
        assert records[rec["name"]]["HCE"] == rec["HCE"]


def test_reference_dataset(reference_run):
    res = reference_run.results()
    assert set(res) == set(METRICS)
    assert_close(res, EXPECTED["dataset"])
    assert res["HCE"] == EXPECTED["dataset"]["HCE"]


def test_dataset_maxf_is_max_of_mean_curve_not_mean_of_max(reference_run):
    curves = reference_run.curves()
    assert curves["F"].shape == (256,) and list(curves["thresholds"][:2]) == [0, 1]
    assert reference_run.results()["maxF"] == pytest.approx(curves["F"].max(), abs=0)
    per_image_mean = np.mean([r["maxF"] for r in reference_run.records()])
    assert curves["F"].max() < per_image_mean  # the two poolings differ on these pairs
    assert reference_run.results()["meanE"] == pytest.approx(curves["E"].mean(), abs=1e-15)


def test_curves_match_pysodmetrics_in_threshold_order():
    pred, gt = _load("00_tree_blur")
    m = DISMetrics()
    m.step(pred, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = pysod.Fmeasure()
        f.step(pred, gt)
    res = f.get_results()
    curves = m.curves()
    np.testing.assert_allclose(curves["F"], res["fm"]["curve"][::-1], atol=1e-12)
    np.testing.assert_allclose(curves["precision"], res["pr"]["p"][::-1], atol=1e-12)
    np.testing.assert_allclose(curves["recall"], res["pr"]["r"][::-1], atol=1e-12)
    assert curves["recall"][0] == pytest.approx(1.0)  # threshold 0 takes every pixel


# ----------------------------------------------------------------------------- inputs
def test_float_and_bool_inputs_follow_the_png_convention():
    pred, gt = _load("03_fence_coarse")
    as_uint8 = image_metrics(pred, gt)
    as_float = image_metrics(pred.astype(np.float32) / 255, gt > 128)
    assert as_float == as_uint8
    binary = image_metrics(pred > 128, gt)
    assert binary == image_metrics(np.where(pred > 128, 255, 0).astype(np.uint8), gt)


def test_shape_mismatch_is_a_clear_error_unless_resize():
    pred, gt = _load("05_chair_thick")
    small = cv2.resize(pred, (160, 120))
    with pytest.raises(ValueError, match=r"shape mismatch.*\(120, 160\).*\(240, 320\)"):
        DISMetrics().step(small, gt)
    resized = DISMetrics(resize=True).step(small, gt)
    expected = image_metrics(cv2.resize(small, (320, 240), interpolation=cv2.INTER_LINEAR), gt)
    assert {k: resized[k] for k in METRICS} == expected


@pytest.mark.parametrize("bad, match", [
    (np.full((8, 8), 1.5), r"\[0, 1\]"),
    (np.full((8, 8), np.nan), r"\[0, 1\]"),
    (np.zeros((8, 8, 3), np.uint8), "grayscale"),
    (np.full((8, 8), 300, np.int32), "0..255"),
])
def test_bad_inputs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        DISMetrics().step(bad, np.zeros((8, 8), np.uint8))


def test_results_before_any_step_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        DISMetrics().results()


# ----------------------------------------------------------------------------- edge cases
def _blob(h: int = 48, w: int = 64) -> np.ndarray:
    gt = np.zeros((h, w), np.uint8)
    cv2.circle(gt, (30, 20), 12, 255, -1)
    cv2.line(gt, (2, 40), (60, 44), 255, 2)
    return gt


def test_empty_gt_behaves_as_the_reference():
    gt = np.zeros((48, 64), np.uint8)
    pred = cv2.GaussianBlur(_blob(), (0, 0), 2)
    ours = image_metrics(pred, gt)
    assert_close(ours, reference_five(pred, gt))
    assert ours["wF"] == 0.0  # the reference's convention for an empty GT
    assert ours["HCE"] == pysod_hce(pred, gt) > 0


def test_full_gt_behaves_as_the_reference():
    gt = np.full((48, 64), 255, np.uint8)
    pred = cv2.GaussianBlur(_blob(), (0, 0), 2)
    ours = image_metrics(pred, gt)
    assert_close(ours, reference_five(pred, gt))
    assert ours["HCE"] == pysod_hce(pred, gt)


def test_constant_prediction_behaves_as_the_reference():
    gt = _blob()
    for value in (0, 77, 128, 129, 255):
        pred = np.full(gt.shape, value, np.uint8)
        ours = image_metrics(pred, gt)
        assert_close(ours, reference_five(pred, gt))
        assert ours["HCE"] == pysod_hce(pred, gt)


def test_constant_quadrant_scores_as_the_reference():
    """A quadrant of constant prediction and constant GT scores 1 or 0 in the S-measure depending on float
    rounding of numpy's mean; ours recomputes that case the reference's way."""
    gt = np.zeros((37, 53), np.uint8)
    gt[:12, :20] = 255
    for value in (0, 51, 100, 200, 255):
        pred = np.full(gt.shape, value, np.uint8)
        assert_close(image_metrics(pred, gt), reference_five(pred, gt), keys=("S",))


def test_centroid_on_the_last_row_gives_nan_s_as_the_reference():
    gt = np.zeros((20, 30), np.uint8)
    gt[-1, 5:9] = 255  # the split row falls outside the image: an empty quadrant
    pred = np.zeros_like(gt)
    pred[-1, 4:9] = 200
    ours = image_metrics(pred, gt)
    assert np.isnan(ours["S"]) and np.isnan(reference_five(pred, gt)["S"])


@pytest.mark.parametrize("gt_value, pred_value", [(0, 255), (255, 0)])
def test_hce_whole_image_region_counts_as_the_official_code(gt_value, pred_value):
    """Empty GT with a full prediction (or the reverse): the official relax_HCE counts 0, pysodmetrics 1."""
    gt = np.full((30, 40), gt_value, np.uint8)
    pred = np.full((30, 40), pred_value, np.uint8)
    assert image_metrics(pred, gt)["HCE"] == 0
    assert pysod_hce(pred, gt) == 1


def test_hce_binarises_the_raw_prediction_not_the_min_max_scaled_one():
    gt = _blob()
    pred = np.where(gt > 128, 120, 10).astype(np.uint8)  # min-max scaling would lift 120 to 255
    assert image_metrics(pred, gt)["HCE"] == hce(np.zeros_like(gt), gt) > 0


def _hce_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(pred, gt) pairs with errors on both sides: blurred, shifted, with a hole and a distant blob,
    speckled, and the two extremes."""
    gt = _blob()
    holed = gt.copy()
    cv2.circle(holed, (30, 20), 6, 0, -1)  # a missed piece inside the object: a false negative with no FP next to it
    cv2.rectangle(holed, (48, 2), (60, 14), 255, -1)  # a distant false positive: one click
    speckled = gt | (np.random.default_rng(0).random(gt.shape) < 0.05).astype(np.uint8) * 255
    return [(cv2.GaussianBlur(gt, (9, 9), 3), gt), (np.roll(gt, 7, axis=1), gt), (holed, gt), (speckled, gt),
            (np.zeros_like(gt), gt), (np.full_like(gt, 255), gt), *[(p, g) for p, g in _reference_pairs()]]


def _reference_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    return [_load(rec["name"]) for rec in EXPECTED["per_image"]]


def test_hce_regions_are_what_hce_counts():
    sides = np.zeros(2, int)
    for pred, gt in _hce_pairs():
        regions = hce_regions(pred, gt)
        assert regions.hce == hce(pred, gt) == image_metrics(pred, gt)["HCE"] == pysod_hce(pred, gt)
        p, g = pred > 128, gt > 128
        assert not (regions.fp & ~(p & ~g)).any()  # relaxed false positives lie in the false positives
        assert not (regions.fn & ~(g & ~p)).any()  # relaxed false negatives (and missed skeleton) in the misses
        for points, region in ((regions.fp_points, regions.fp), (regions.fn_points, regions.fn)):
            assert points.dtype == np.int64 and points.shape == (len(points), 2)
            assert region[points[:, 1], points[:, 0]].all()  # every counted point (x, y) lies on its region
        sides += len(regions.fp_points), len(regions.fn_points)
    assert (sides > 0).all()  # both sides were counted somewhere: the checks are not vacuous


def test_hce_counts_one_click_for_a_region_with_no_boundary_to_edit():
    gt = np.zeros((40, 40), np.uint8)
    gt[5:15, 5:15] = 255
    pred = gt.copy()
    pred[25:37, 25:37] = 255  # a false-positive square far from the object: fixed by one click
    regions = hce_regions(pred, gt)
    assert regions.hce == 1 and len(regions.fn_points) == 0
    y, x = np.argwhere(regions.fp)[0]
    assert regions.fp_points.tolist() == [[x, y]]  # the relaxed region's first pixel in raster order


def test_perfect_prediction():
    gt = _blob()
    ours = image_metrics(gt, gt)
    assert ours["maxF"] == pytest.approx(1.0) and ours["MAE"] == 0.0 and ours["HCE"] == 0
    assert ours["wF"] == pytest.approx(1.0) and ours["S"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- pieces
def test_gaussian_is_matlab_fspecial():
    k = np.outer(gaussian_1d(), gaussian_1d())
    y, x = np.mgrid[-3:4, -3:4]
    ref = np.exp(-(x * x + y * y) / 50.0)
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-14)


def test_cropped_skeleton_equals_full_skeleton():
    from skimage.morphology import skeletonize

    gt = np.zeros((90, 120), bool)
    gt[30:70, 40:100] = _blob(40, 60) > 128
    np.testing.assert_array_equal(gt_skeleton(gt), skeletonize(gt))
    assert not gt_skeleton(np.zeros((5, 5), bool)).any()


def test_skeleton_cache_memory_and_disk(tmp_path):
    pred, gt = _load("00_tree_blur")
    g = gt > 128
    cache = SkeletonCache(tmp_path / "skel")
    first = cache.get(g)
    assert cache.misses == 1 and len(list((tmp_path / "skel").glob("*.npy"))) == 1
    np.testing.assert_array_equal(cache.get(g), first)
    assert cache.hits == 1
    fresh = SkeletonCache(tmp_path / "skel")  # a new process: served from disk
    np.testing.assert_array_equal(fresh.get(g), first)
    assert fresh.hits == 1 and fresh.misses == 0
    path = next((tmp_path / "skel").glob("*.npy"))
    path.write_bytes(b"not an npy file")  # a corrupt entry is recomputed, not trusted
    again = SkeletonCache(tmp_path / "skel")
    np.testing.assert_array_equal(again.get(g), first)
    assert again.misses == 1
    with_cache = DISMetrics(skeleton_cache_dir=tmp_path / "skel").step(pred, gt)
    assert with_cache["HCE"] == EXPECTED["per_image"][0]["HCE"]


def test_skeleton_cache_keys_on_content_and_shape():
    a = np.zeros((4, 6), bool)
    assert SkeletonCache.key(a) != SkeletonCache.key(np.zeros((6, 4), bool))
    b = a.copy()
    b[1, 2] = True
    assert SkeletonCache.key(a) != SkeletonCache.key(b)
    assert SkeletonCache.key(b) == SkeletonCache.key(b.copy())


def test_timings_are_recorded_per_part():
    m = DISMetrics()
    m.step(*_load("02_fence_shift_noise"))
    assert {"histogram", "maxF", "meanE", "MAE", "S", "wF", "skeleton", "HCE"} <= set(m.timings)
    assert all(v >= 0 for v in m.timings.values())
