"""Procedural DIS-like data: determinism, layout, and the properties that make it learnable."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dissam.data.procedural import textures
from dissam.data.enrichment import connected_components, enrichment_summary
from dissam.data.folders import list_pairs
from dissam.data.procedural.scenes import (
    COMPLEXITY_ORDER,
    MIX,
    SCENES,
    _lab,
    family_weights,
    generate_dataset,
    render_scene,
    scene_rng,
    solid_core_fraction,
    split_plan,
    te_family_weights,
)
from dissam.data.procedural.shapes import FAMILIES, FINE_PART_FAMILIES, FRAME_FAMILIES, SMOOTH_FAMILIES, render_shape
from dissam.data.splits import DIS5K_SPLITS, TRAIN_SPLIT, VAL_SPLIT, ZERO_SHOT_SETS

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
        multi = [len(connected_components(render_scene(scene_rng(0, TRAIN_SPLIT, i), size, "dis")[1])) > 1
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
    stamp = (tmp_path / "a" / TRAIN_SPLIT / "im" / "dis-tr-00000.jpg").stat().st_mtime_ns
    again = generate_dataset(tmp_path / "a", cfg, progress=False)
    assert again["reused"] is True
    assert (tmp_path / "a" / TRAIN_SPLIT / "im" / "dis-tr-00000.jpg").stat().st_mtime_ns == stamp
    generate_dataset(tmp_path / "b", cfg, progress=False, workers=2)
    for split in (TRAIN_SPLIT, ZERO_SHOT_SETS[1]):
        for sub in ("im", "gt"):
            for f in sorted((tmp_path / "a" / split / sub).iterdir()):
                assert f.read_bytes() == (tmp_path / "b" / split / sub / f.name).read_bytes()
    (tmp_path / "a" / VAL_SPLIT / "gt" / "dis-vd-00001.png").unlink()  # incomplete: regenerated
    assert generate_dataset(tmp_path / "a", cfg, progress=False, workers=1)["reused"] is False
    assert (tmp_path / "a" / VAL_SPLIT / "gt" / "dis-vd-00001.png").is_file()
    smaller = dataclasses.replace(cfg, n_train=3)  # a new config: redone, leftovers removed
    assert generate_dataset(tmp_path / "a", smaller, progress=False, workers=1)["reused"] is False
    assert len(list((tmp_path / "a" / TRAIN_SPLIT / "im").iterdir())) == 3


def test_split_plan_rejects_unknown_zero_shot_sets(tiny_data_config):
    with pytest.raises(ValueError, match="zero-shot set"):
        split_plan(dataclasses.replace(tiny_data_config, zero_shot_sets=("DAVIS",)))


def test_enrichment_summary_counts(tiny_data, tiny_data_config):
    paper = enrichment_summary(tiny_data, TRAIN_SPLIT, "components")
    assert paper["images"] == tiny_data_config.n_train
    assert paper["samples"] == paper["components"] >= paper["images"]
    assert sum(paper["components_hist"].values()) == paper["images"]
    assert sum(int(k) * v for k, v in paper["components_hist"].items()) == paper["components"]
    authors = enrichment_summary(tiny_data, TRAIN_SPLIT, "filtered")
    assert authors["images"] == paper["images"] and authors["samples"] >= 1


# ------------------------------------------------------------------ the object mix
def _largest_fill(gt: np.ndarray) -> float:
    comp = connected_components(gt)[0]
    ys, xs = np.nonzero(comp)
    return comp.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))


def test_dis_mix_is_mostly_solid_objects_with_a_third_of_frames():
    """About two thirds of the objects are solid (MIX), but multi-object scenes and thin legs blur that."""
    gts = [render_scene(scene_rng(0, TRAIN_SPLIT, i), 192, "dis")[1] for i in range(80)]
    core = np.array([solid_core_fraction(gt) for gt in gts])
    fill = np.array([_largest_fill(gt) for gt in gts])
    assert 0.45 <= np.mean(core > 0.3) <= 0.8  # largest object has a solid body (generator v1: 0.15)
    assert 0.3 <= np.mean(fill > 0.5) <= 0.75  # largest object fills most of its box (generator v1: 0.2)
    assert np.mean(core < 0.1) >= 0.15  # thin frames are still there


@pytest.mark.parametrize("family", sorted(set(FINE_PART_FAMILIES) | set(SMOOTH_FAMILIES)))
def test_solid_families_are_solid_and_at_least_3px_wide(family):
    for size in (64, 192):
        for i in range(12):
            rng = np.random.default_rng(i)
            px = size * rng.uniform(0.4, 0.95)
            box = ((size - px) / 2,) * 2 + ((size + px) / 2,) * 2
            m = render_shape(FAMILIES[family](rng, px, rng.uniform()), size, box, rng.uniform(-180, 180))
            assert np.array_equal(cv2.morphologyEx(m, cv2.MORPH_OPEN, CROSS), m), (family, size, i)
            if size == 192 and px > 0.6 * size:  # a solid body at least S/12 thick
                assert solid_core_fraction(m) > 0.25, (family, i)


def test_family_weights_follow_the_mix_and_te_sets_tilt_by_complexity():
    w = family_weights()
    assert set(w) == set(FAMILIES) == set(COMPLEXITY_ORDER)
    for share, group in zip(MIX.values(), (FINE_PART_FAMILIES, SMOOTH_FAMILIES, FRAME_FAMILIES)):
        assert sum(w[f] for f in group) == pytest.approx(share)
    assert MIX == {"fine": 0.45, "smooth": 0.20, "frames": 0.35}
    te = [te_family_weights(k) for k in (1, 2, 3, 4)]
    assert all(sum(t.values()) == pytest.approx(1) for t in te)
    frames = [sum(t[f] for f in FRAME_FAMILIES) for t in te]
    assert frames == sorted(frames) and frames[0] < 0.2 < 0.6 < frames[3]
    union = {f: np.mean([t[f] for t in te]) for f in FAMILIES}  # the four TE sets keep about the mix
    assert sum(union[f] for f in FRAME_FAMILIES) == pytest.approx(MIX["frames"], abs=0.06)


def test_test_splits_grow_monotonically_in_structural_complexity():
    means = [np.mean([_contour_complexity(render_scene(scene_rng(0, f"te{k}", i), 128, f"dis-te{k}")[1])
                      for i in range(24)]) for k in (1, 2, 3, 4)]
    assert means == sorted(means), means


# ------------------------------------------------------------------ textures
def test_textures_load_offline_and_never_from_evaluation_photos(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    textures.load_textures.cache_clear()
    try:
        loaded = textures.load_textures()
    finally:
        textures.load_textures.cache_clear()
    assert len(loaded) == len(textures.TEXTURE_SOURCES)
    for name, img in zip(textures.TEXTURE_SOURCES, loaded):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert min(img.shape[:2]) >= 96 and img.std() > 5, name
    assert not set(textures.TEXTURE_SOURCES) & textures.EVALUATION_PHOTOS
    assert {"astronaut", "chelsea", "coffee"} <= textures.EVALUATION_PHOTOS
    with pytest.raises(ValueError, match="evaluation photo"):
        textures._load_one("chelsea")


def test_texture_crops_are_deterministic_and_photographic():
    a = textures.photo_background(np.random.default_rng(5), 96)
    b = textures.photo_background(np.random.default_rng(5), 96)
    assert a.shape == (96, 96, 3) and a.dtype == np.float32 and np.array_equal(a, b)
    d = textures.texture_detail(np.random.default_rng(6), 96)
    assert d.shape == (96, 96) and abs(float(d.mean())) < 1e-3 and 0.9 < float(d.std()) < 1.1


# ------------------------------------------------------------------ determinism
def _scene_digest(family: str, size: int, n: int = 3) -> str:
    h = hashlib.sha256()
    for i in range(n):
        image, gt = render_scene(scene_rng(0, "pin", i), size, family)
        h.update(image.tobytes())
        h.update(gt.tobytes())
    return h.hexdigest()[:16]


def test_scenes_are_identical_in_a_fresh_process():
    """Same seed, same bytes, also when the textures are loaded anew by another interpreter."""
    code = ("from dissam.data.procedural.scenes import render_scene, scene_rng; import hashlib; h = hashlib.sha256()\n"
            "for i in range(3):\n    im, gt = render_scene(scene_rng(0, 'pin', i), 96, 'dis')\n"
            "    h.update(im.tobytes()); h.update(gt.tobytes())\nprint(h.hexdigest()[:16])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == _scene_digest("dis", 96)


def test_zero_shot_scenes_are_those_of_generator_version_1():
    """coift, hrsod and thin keep their look: the same scenes, byte for byte, as generator version 1 (if a
    change to them is meant, bump GENERATOR_VERSION and update these digests)."""
    assert _scene_digest("coift", 64) == "e818c6cf992eba8a"
    assert _scene_digest("hrsod", 64) == "865c891e22282c5c"
    assert _scene_digest("thin", 64) == "ea689f70d7af3f82"


def test_two_generations_are_byte_identical(tmp_path, tiny_data_config):
    cfg = dataclasses.replace(tiny_data_config, n_train=4, n_val=2, n_test=2, n_zero_shot=1)
    generate_dataset(tmp_path / "a", cfg, progress=False, workers=1)
    generate_dataset(tmp_path / "b", cfg, progress=False, workers=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*") if p.name != "dataset.json")
    assert len(files) == 2 * (4 + 2 + 4 * 2 + len(cfg.zero_shot_sets))
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def _tree_digest(root) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in sorted(root.rglob("*.*")):
        if p.name != "dataset.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_default_generation_keeps_its_bytes_and_manifest(tmp_path, tiny_data_config):
    """``image_wh`` is opt-in: without it the files and the manifest's config are those written before the
    option existed (digests computed on the generator without it)."""
    cfg = dataclasses.replace(tiny_data_config, n_train=2, n_val=1, n_test=1, n_zero_shot=1)
    generate_dataset(tmp_path, cfg, progress=False, workers=1)
    assert _tree_digest(tmp_path) == "d03aeee1a5009e26"
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    manifest.pop("seconds")
    assert "image_wh" not in manifest["config"]
    assert hashlib.blake2b(json.dumps(manifest, sort_keys=True).encode(), digest_size=8).hexdigest() == \
        "de388c2bec1403d2"


def test_image_wh_writes_dis5k_size_files_of_the_same_scenes(tmp_path, tiny_data_config):
    cfg = dataclasses.replace(tiny_data_config, n_train=3, n_val=1, n_test=1, n_zero_shot=0, zero_shot_sets=())
    small = generate_dataset(tmp_path / "small", cfg, progress=False, workers=1)
    big = generate_dataset(tmp_path / "big", cfg, progress=False, workers=1, image_wh=(150, 120))
    assert big["config"]["image_wh"] == [150, 120] and big["config"]["size"] == cfg.size
    for split in (TRAIN_SPLIT, VAL_SPLIT):
        assert big["splits"][split]["components_hist"] == small["splits"][split]["components_hist"]
        for pair in list_pairs(tmp_path / "big" / split):
            image, gt = pair.load()
            assert image.shape == (120, 150, 3) and gt.shape == (120, 150)
            assert set(np.unique(gt)) <= {0, 255}
    # A different size is a different data set: regenerated, not reused.
    assert generate_dataset(tmp_path / "big", cfg, progress=False, workers=1)["reused"] is False
    again = generate_dataset(tmp_path / "big", cfg, progress=False, workers=1, image_wh=(150, 120))
    assert again["reused"] is False and list_pairs(tmp_path / "big" / TRAIN_SPLIT)[0].load()[1].shape == (120, 150)
