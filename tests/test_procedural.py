"""Procedural DIS-like data: determinism, layout, and the properties that make it learnable."""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from dissam.data.enrichment import connected_components
from dissam.data.folders import DIS5K_SPLITS, list_pairs
from dissam.data.procedural import (SCENES, _lab, enrichment_summary, generate_dataset, render_scene, scene_rng,
                                    split_plan)
from dissam.data.shapes import FAMILIES

CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _contour_complexity(gt: np.ndarray) -> float:
    contours, _ = cv2.findContours((gt > 0).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return sum(len(c) for c in contours) / np.sqrt((gt > 0).sum())


@pytest.mark.parametrize("family", SCENES + tuple(FAMILIES))
@pytest.mark.parametrize("size", [64, 192])
def test_render_scene_types_and_determinism(family, size):
    a_img, a_gt = render_scene(np.random.default_rng(3), size, family)
    b_img, b_gt = render_scene(np.random.default_rng(3), size, family)
    assert a_img.shape == (size, size, 3) and a_img.dtype == np.uint8
    assert a_gt.shape == (size, size) and a_gt.dtype == np.uint8
    assert set(np.unique(a_gt)) <= {0, 255} and a_gt.any()
    assert np.array_equal(a_img, b_img) and np.array_equal(a_gt, b_gt)
    c_img, _ = render_scene(np.random.default_rng(4), size, family)
    assert not np.array_equal(a_img, c_img)


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="unknown scene family"):
        render_scene(np.random.default_rng(0), 64, "forest")


@pytest.mark.parametrize("size", [64, 192])
def test_every_structure_is_at_least_3px_wide(size):
    for i in range(24):
        family = ("dis", "dis-te4", "thin", "coift")[i % 4]
        _, gt = render_scene(scene_rng(1, "w", i), size, family)
        # A 3x3 opening removes every part thinner than 3 px: it must leave the GT unchanged ...
        assert np.array_equal(cv2.morphologyEx(gt, cv2.MORPH_OPEN, CROSS), gt), (family, i)
        # ... and every component is at least 3 px thick somewhere (distance transform >= 1.5).
        for comp in connected_components(gt):
            dist = cv2.distanceTransform(comp.astype(np.uint8), cv2.DIST_L2, 5)
            assert dist.max() >= 1.5  # (the opening guarantees >= 2)


def test_objects_stand_out_from_the_background_around_them():
    """Each GT component's colour is far (CIELAB) from the ring of background pixels around it."""
    ring_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    for i in range(12):
        img, gt = render_scene(scene_rng(2, "v", i), 192, ("dis", "dis-te4", "coift", "thin")[i % 4])
        lab = _lab(img.reshape(-1, 3).astype(np.float32)).reshape(img.shape)
        for comp in connected_components(gt):
            ring = (cv2.dilate(comp.astype(np.uint8), ring_kernel) > 0) & (gt == 0)
            d = np.linalg.norm(lab[ring] - np.median(lab[comp], axis=0), axis=1)
            assert np.percentile(d, 10) > 30, i


def test_several_objects_in_a_third_of_training_scenes():
    for size in (64, 192):
        multi = [len(connected_components(render_scene(scene_rng(0, "DIS-TR", i), size, "dis")[1])) > 1
                 for i in range(60)]
        assert np.mean(multi) >= 1 / 3, size


def test_test_splits_grow_in_structural_complexity():
    means = [np.mean([_contour_complexity(render_scene(scene_rng(0, f"te{k}", i), 128, f"dis-te{k}")[1])
                      for i in range(24)]) for k in (1, 4)]
    assert means[0] < means[1]


def test_generate_dataset_layout_and_summary(tiny_data, tiny_data_config):
    cfg = tiny_data_config
    manifest = json.loads((tiny_data / "dataset.json").read_text())
    expected = dict(zip(DIS5K_SPLITS, [cfg.n_train, cfg.n_val] + [cfg.n_test] * 4))
    expected.update({name: cfg.n_zero_shot for name in cfg.zero_shot_sets})
    assert set(manifest["splits"]) == set(expected) and manifest["config"]["size"] == cfg.size
    for split, n in expected.items():
        pairs = list_pairs(tiny_data / split)
        assert len(pairs) == n == manifest["splits"][split]["images"]
        assert all(p.image_path.suffix == ".jpg" and p.gt_path.suffix == ".png" for p in pairs)
        image, gt = pairs[0].load()
        assert image.shape == (cfg.size, cfg.size, 3) and gt.shape == (cfg.size, cfg.size)
        assert sum(manifest["splits"][split]["components_hist"].values()) == n


def test_generate_dataset_is_idempotent_and_independent_of_workers(tmp_path, tiny_data_config):
    cfg = dataclasses.replace(tiny_data_config, n_train=6, n_val=2, n_test=1, n_zero_shot=1)
    first = generate_dataset(tmp_path / "a", cfg, progress=False, workers=1)
    assert first["reused"] is False
    stamp = (tmp_path / "a" / "DIS-TR" / "im" / "dis-tr-00000.jpg").stat().st_mtime_ns
    again = generate_dataset(tmp_path / "a", cfg, progress=False)
    assert again["reused"] is True
    assert (tmp_path / "a" / "DIS-TR" / "im" / "dis-tr-00000.jpg").stat().st_mtime_ns == stamp
    generate_dataset(tmp_path / "b", cfg, progress=False, workers=2)
    for split in ("DIS-TR", "HRSOD"):
        for sub in ("im", "gt"):
            for f in sorted((tmp_path / "a" / split / sub).iterdir()):
                assert f.read_bytes() == (tmp_path / "b" / split / sub / f.name).read_bytes()
    (tmp_path / "a" / "DIS-VD" / "gt" / "dis-vd-00001.png").unlink()  # incomplete: regenerated
    assert generate_dataset(tmp_path / "a", cfg, progress=False, workers=1)["reused"] is False
    assert (tmp_path / "a" / "DIS-VD" / "gt" / "dis-vd-00001.png").is_file()
    smaller = dataclasses.replace(cfg, n_train=3)  # a new config: redone, leftovers removed
    assert generate_dataset(tmp_path / "a", smaller, progress=False, workers=1)["reused"] is False
    assert len(list((tmp_path / "a" / "DIS-TR" / "im").iterdir())) == 3


def test_split_plan_rejects_unknown_zero_shot_sets(tiny_data_config):
    with pytest.raises(ValueError, match="zero-shot set"):
        split_plan(dataclasses.replace(tiny_data_config, zero_shot_sets=("DAVIS",)))


def test_enrichment_summary_counts(tiny_data, tiny_data_config):
    paper = enrichment_summary(tiny_data, "DIS-TR", "components")
    assert paper["images"] == tiny_data_config.n_train
    assert paper["samples"] == paper["components"] >= paper["images"]
    assert sum(paper["components_hist"].values()) == paper["images"]
    assert sum(int(k) * v for k, v in paper["components_hist"].items()) == paper["components"]
    authors = enrichment_summary(tiny_data, "DIS-TR", "filtered")
    assert authors["images"] == paper["images"] and authors["samples"] >= 1
