"""The paper's runs scored on a profile (dissam.repro.evaluate's profile section) on the tiny profile: images with an
empty or faint test GT, pooled ALL from the stored per-image results, threads, and the GT skeletons on disk."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
import pytest

from dissam import evaluation
from dissam.data.folders import list_pairs
from dissam.data.images import read_mask
from dissam.data.splits import TEST_SPLITS, ZERO_SHOT_SETS
from dissam.evaluation import evaluate_pairs
from dissam.metrics import METRICS, OTHER_CONVENTIONS, DISMetrics, SkeletonCache, gt_skeleton
from dissam.metrics.inputs import to_gt_mask
from dissam.repro import config, pipeline, runs, stages
from dissam.repro.config import get_profile, measures_path, skeleton_dir
from dissam.repro.evaluate import evaluate_method, evaluate_pooled

BLANK_SPLIT = TEST_SPLITS[0]


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """The tiny profile, trained (4 iterations), its first test split with one empty and one faint GT."""
    before = os.environ.get("DISSAM_RUNS")
    os.environ["DISSAM_RUNS"] = str(tmp_path_factory.mktemp("runs"))
    try:
        profile = get_profile("tiny")
        pipeline.run_stages(profile, progress=False)
        gt_paths = [p.gt_path for p in list_pairs(config.split_dir(profile, BLANK_SPLIT))]
        gt = read_mask(gt_paths[0])
        cv2.imwrite(str(gt_paths[0]), np.zeros_like(gt))  # empty
        cv2.imwrite(str(gt_paths[1]), np.where(gt > 128, 100, 0).astype(np.uint8))  # faint: only values <= 128
        stages.cache_stage1(profile, [BLANK_SPLIT, *ZERO_SHOT_SETS], progress=False)
        yield profile
    finally:
        if before is None:
            os.environ.pop("DISSAM_RUNS", None)
        else:
            os.environ["DISSAM_RUNS"] = before


def _records(profile, method: str, split: str) -> pd.DataFrame:
    return pd.read_csv(config.prediction_dir(profile, method, split).with_suffix(".csv"))


@pytest.mark.parametrize("method", [runs.MAIN, runs.STAGE1])
def test_empty_and_faint_test_gts_are_predicted_and_evaluated(profile, method):
    """No GT foreground, no box: the prediction is empty, and the image is scored as the DIS evaluation
    scores an empty GT (on cfd6bee the refiner wrote no prediction for it: KeyError in evaluation)."""
    summary = evaluate_method(profile, method, BLANK_SPLIT)
    pairs = list_pairs(config.split_dir(profile, BLANK_SPLIT))
    records = _records(profile, method, BLANK_SPLIT).set_index("name")
    assert list(records.index) == [p.stem for p in pairs] and set(summary) == set(METRICS)
    for pair in pairs[:2]:
        pred = cv2.imread(str(config.prediction_dir(profile, method, BLANK_SPLIT) / f"{pair.stem}.png"), 0)
        assert pred.shape == read_mask(pair.gt_path).shape and not pred.any()
        row = records.loc[pair.stem]
        assert (row["maxF"], row["MAE"], row["S"], row["HCE"]) == (0.0, 0.0, 1.0, 0)
    assert np.isfinite(records[list(METRICS)].to_numpy()).all()


def _measured_again(profile, method: str, splits: list[str]) -> tuple[dict, dict]:
    """Pooled ALL measured the way cfd6bee's evaluate_pooled did: every image measured again, one set."""
    items = []
    for split in splits:
        preds = runs.predictions(profile, method, split)
        items += [(f"{split}/{p.stem}", preds[p.stem], read_mask(p.gt_path))
                  for p in list_pairs(config.split_dir(profile, split))]
    metrics = DISMetrics()
    for name, pred, gt in items:
        metrics.step(pred, gt, name)
    assert evaluate_pairs(iter(items), progress=False)[1] == metrics.results()
    return metrics.results(), metrics.other_conventions()


@pytest.mark.parametrize("method", [runs.MAIN, runs.STAGE1])
def test_pooled_all_from_stored_results_equals_measuring_again(profile, method, monkeypatch):
    splits = list(ZERO_SHOT_SETS)
    for split in splits:
        evaluate_method(profile, method, split)
        assert measures_path(profile, method, split).is_file()
    six, other = _measured_again(profile, method, splits)

    def no_second_pass(*args, **kwargs):
        raise AssertionError("pooled ALL measured an image again")

    monkeypatch.setattr(DISMetrics, "measure", no_second_pass)
    assert evaluate_pooled(profile, method, splits) == six  # exactly, to the last bit
    assert evaluate_pooled(profile, method, splits, conventions=True) == {**six, **other}


def test_pooled_all_measures_a_split_whose_predictions_are_newer(profile):
    """A stored result older than the split's predictions is not used: the split is measured again."""
    split = ZERO_SHOT_SETS[0]
    evaluate_method(profile, runs.STAGE1, split)
    path = measures_path(profile, runs.STAGE1, split)
    os.utime(path, (0, 0))
    assert evaluate_pooled(profile, runs.STAGE1, [split]) == _measured_again(profile, runs.STAGE1, [split])[0]
    assert path.stat().st_mtime > 0


def test_threads_do_not_change_any_number(profile):
    split = ZERO_SHOT_SETS[1]
    one = evaluate_method(profile, runs.MAIN, split, conventions=True, workers=1)
    records_one = _records(profile, runs.MAIN, split)
    with np.load(measures_path(profile, runs.MAIN, split)) as data:
        stored_one = {k: data[k].copy() for k in data.files}
    three = evaluate_method(profile, runs.MAIN, split, conventions=True, workers=3)
    assert one == three and set(three) == {*METRICS, *OTHER_CONVENTIONS}
    pd.testing.assert_frame_equal(records_one, _records(profile, runs.MAIN, split), check_exact=True)
    with np.load(measures_path(profile, runs.MAIN, split)) as data:
        for key, value in stored_one.items():
            np.testing.assert_array_equal(data[key], value, err_msg=key)


def test_gt_skeletons_are_kept_on_disk_and_equal_the_computed_ones(profile):
    split = ZERO_SHOT_SETS[2]
    evaluate_method(profile, runs.STAGE1, split)
    gts = [to_gt_mask(read_mask(p.gt_path)) for p in list_pairs(config.split_dir(profile, split))]
    files = {p.stem for p in skeleton_dir(profile).glob("*.npy")}
    assert {SkeletonCache.key(gt) for gt in gts} <= files
    cache = SkeletonCache(skeleton_dir(profile))  # a fresh cache, as in another process or a rerun
    for gt in gts:
        np.testing.assert_array_equal(cache.get(gt), gt_skeleton(gt))
    assert (cache.hits, cache.misses) == (len(gts), 0)


def test_seconds_per_image_measures_the_profile_path():
    pred, gt = evaluation.synthetic_pair(48, 64)
    assert pred.shape == gt.shape == (48, 64) and pred.dtype == gt.dtype == np.uint8 and (gt > 128).any()
    assert evaluation.seconds_per_image(48, 64, images=2, workers=2) > 0
    assert evaluation.seconds_per_image(48, 64, images=2, cached_skeletons=True) > 0
