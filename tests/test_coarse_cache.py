"""The stage-1 cache: one embedding per image, keys that invalidate, atomic writes, resume, the reader."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dissam.coarse import CachedCoarse, GrabCutSegmenter, build_coarse, cache_masks
from dissam.coarse.base import CoarseResult
from dissam.coarse.cache import MaskStore, image_digest
from dissam.data.enrichment import targets_for
from dissam.data.folders import list_pairs
from dissam.repro import config

N_COMPONENTS = (3, 2, 4, 1)  # disjoint objects per image: enrichment gives one box each


def make_split(root: Path, seed: int = 0, counts: tuple[int, ...] = N_COMPONENTS, ext: str = ".png") -> Path:
    """A small im/gt folder: bright disks and bars (disjoint) on a dark noisy background."""
    rng = np.random.default_rng(seed)
    (root / "im").mkdir(parents=True)
    (root / "gt").mkdir()
    for i, n in enumerate(counts):
        image = rng.integers(0, 80, (72, 96, 3)).astype(np.uint8)
        gt = np.zeros((72, 96), np.uint8)
        for k in range(n):
            cx = 12 + k * 22
            if k % 2:
                cv2.rectangle(gt, (cx - 7, 10 + i), (cx + 7, 55), 255, -1)
            else:
                cv2.circle(gt, (cx, 36), 9, 255, -1)
        image[gt > 0] = (200 + 10 * i, 180, 40)
        Image.fromarray(image).save(root / "im" / f"img{i}{ext}", quality=95)
        Image.fromarray(gt).save(root / "gt" / f"img{i}.png")
    return root


class Counting(GrabCutSegmenter):
    """GrabCut that can fail after a number of predictions (an interrupted run). It counts in its own
    process, so the cache runs it inline."""

    cpu_parallel = False

    def __init__(self, fail_after: int | None = None, iters: int = 1) -> None:
        super().__init__(iters=iters)
        self.fail_after, self.predictions = fail_after, 0

    def _predict(self, box) -> CoarseResult:
        if self.fail_after is not None and self.predictions >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.predictions += 1
        return super()._predict(box)


def test_enriched_split_embeds_each_image_once(tmp_path):
    data = make_split(tmp_path / "split")
    seg = Counting()
    manifest = cache_masks(seg, data, tmp_path / "cache", enrichment="components", progress=False)
    assert manifest["images"] == len(N_COMPONENTS) == manifest["encoder_calls"] == seg.encoder_calls
    assert manifest["boxes"] == sum(N_COMPONENTS) == seg.predictions == manifest["computed"]
    assert manifest["cache_hits"] == 0
    on_disk = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    for field in ("images", "boxes", "encoder_calls", "cache_hits"):
        assert isinstance(on_disk[field], int) and on_disk[field] == manifest[field]
    assert on_disk["segmenter"] == seg.key and on_disk["enrichment"] == "components"
    assert on_disk["data_dir"] == str(data.resolve()) and on_disk["seconds"] >= 0
    assert len(on_disk["samples"]) == sum(N_COMPONENTS)
    assert all((tmp_path / "cache" / s["file"]).is_file() for s in on_disk["samples"])
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    again = cache_masks(Counting(), data, tmp_path / "cache", enrichment="components", progress=False)  # unchanged: all hits, no embedding
    assert again["encoder_calls"] == 0 and again["cache_hits"] == sum(N_COMPONENTS) and again["computed"] == 0


def test_parallel_grabcut_writes_the_same_cache_as_one_process(tmp_path):
    data = make_split(tmp_path / "split", counts=(3, 2, 4, 1, 2, 3))
    serial = cache_masks(GrabCutSegmenter(iters=1), data, tmp_path / "one", enrichment="components",
                         progress=False, workers=1)
    seg = GrabCutSegmenter(iters=1)
    parallel = cache_masks(seg, data, tmp_path / "two", enrichment="components", progress=False, workers=2)
    for key in ("images", "boxes", "encoder_calls", "computed", "cache_hits", "samples"):
        assert serial[key] == parallel[key], key
    assert seg.encoder_calls == parallel["encoder_calls"] == 6
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(files) == sum((3, 2, 4, 1, 2, 3))
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()


def test_whole_mask_targets_and_shared_cache_dir(tmp_path):
    a, b = make_split(tmp_path / "A", seed=1), make_split(tmp_path / "B", seed=2, counts=(2, 2))
    cache = tmp_path / "cache"
    whole = cache_masks(Counting(), a, cache, enrichment=None, progress=False)
    assert whole["boxes"] == whole["images"] == len(N_COMPONENTS) and whole["enrichment"] == "none"
    enriched = cache_masks(Counting(), a, cache, enrichment="components", progress=False)
    # one-component image: its component box equals the whole box, so that one is a hit
    assert enriched["cache_hits"] == 1 and enriched["computed"] == sum(N_COMPONENTS) - 1
    other = cache_masks(Counting(), b, cache, enrichment="components", progress=False)
    assert other["computed"] == 4 and other["encoder_calls"] == 2
    assert len(list((cache / "manifests").glob("*.json"))) == 3
    assert cache_masks(Counting(), a, cache, progress=False)["encoder_calls"] == 0


def test_changed_image_box_or_model_is_recomputed(tmp_path):
    data = make_split(tmp_path / "split")
    cache = tmp_path / "cache"
    cache_masks(Counting(), data, cache, progress=False)
    # change one image's pixels: only that image is embedded again
    path = data / "im" / "img2.png"
    pixels = np.array(Image.open(path))
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)
    seg = Counting()
    changed = cache_masks(seg, data, cache, enrichment="components", progress=False)
    assert changed["encoder_calls"] == 1 and changed["computed"] == N_COMPONENTS[2]
    # other settings: a different key, nothing reused
    seg2 = Counting(iters=2)
    assert seg2.key != seg.key
    m = cache_masks(seg2, data, cache, enrichment="components", progress=False)
    assert m["cache_hits"] == 0 and m["encoder_calls"] == len(N_COMPONENTS)
    # another box of the same image: not in the cache
    reader = CachedCoarse(cache, seg.key)
    image = np.array(Image.open(data / "im" / "img0.png"))
    box = targets_for(np.array(Image.open(data / "gt" / "img0.png")), "components")[0].box
    assert reader("img0", image, box).shape == image.shape[:2]
    moved = (box[0] + 1, box[1], box[2] + 1, box[3])
    with pytest.raises(KeyError, match=r"img0.*\(%d, %d, %d, %d\)" % moved):
        reader("img0", image, moved)


def test_stale_or_corrupt_entries_are_never_used(tmp_path):
    image = np.full((40, 50, 3), 30, np.uint8)
    image[10:30, 15:35] = 220
    store = MaskStore(tmp_path, "some-key")
    digest = image_digest(image)
    store.put(digest, (10, 5, 40, 35), np.full((40, 50), 255, np.uint8))
    assert store.get(digest, (10, 5, 40, 35)) is not None
    path = store.path(digest, (10, 5, 40, 35))
    # a file at the right place written under another key (e.g. a digest collision) is not used
    MaskStore(tmp_path, "other-key").put(digest, (10, 5, 40, 35), np.zeros((40, 50), np.uint8))
    foreign = MaskStore(tmp_path, "other-key").path(digest, (10, 5, 40, 35))
    path.write_bytes(foreign.read_bytes())
    assert store.get(digest, (10, 5, 40, 35)) is None
    path.write_bytes(b"\x89PNG truncated")
    assert store.get(digest, (10, 5, 40, 35)) is None
    seg = GrabCutSegmenter(iters=1)
    reader = CachedCoarse(tmp_path, seg, compute_missing=True)
    store2 = reader.store
    mask = reader("x", image, (10, 5, 40, 35))
    assert store2.get(digest, (10, 5, 40, 35)) is not None and np.array_equal(mask, seg(image, (10, 5, 40, 35)))


def test_interrupted_run_resumes(tmp_path):
    data = make_split(tmp_path / "split")
    cache = tmp_path / "cache"
    fail_after = 4  # image 0 (3 boxes) done, image 1 has 1 of 2 boxes
    with pytest.raises(KeyboardInterrupt):
        cache_masks(Counting(fail_after=fail_after), data, cache, enrichment="components", progress=False)
    assert not list(cache.rglob("*.tmp")) and not (cache / "manifest.json").exists()
    done_images = 1
    seg = Counting()
    resumed = cache_masks(seg, data, cache, enrichment="components", progress=False)
    assert resumed["encoder_calls"] == len(N_COMPONENTS) - done_images
    assert resumed["cache_hits"] == fail_after and seg.predictions == sum(N_COMPONENTS) - fail_after
    fresh = cache_masks(Counting(), data, tmp_path / "fresh", enrichment="components", progress=False)
    for s in fresh["samples"]:  # resumed results equal an uninterrupted run's
        a = np.array(Image.open(cache / s["file"]))
        assert np.array_equal(a, np.array(Image.open(tmp_path / "fresh" / s["file"])))


def test_reader_is_a_coarse_source(tmp_path):
    data = make_split(tmp_path / "split", ext=".jpg")
    seg = build_coarse("grabcut", iters=1)
    cache_masks(seg, data, tmp_path / "cache", enrichment="components", progress=False)
    reader = CachedCoarse(tmp_path / "cache", seg)
    for pair in list_pairs(data):
        image, gt = pair.load()
        for t in targets_for(gt, "components"):
            got = reader(pair.stem, image, t.box)
            assert got.dtype == np.uint8 and got.shape == gt.shape
            seg.set_image(image)
            assert np.array_equal(got, seg.predict(t.box).mask)
    with pytest.raises(ValueError, match="needs a segmenter"):
        CachedCoarse(tmp_path / "cache", seg.key, compute_missing=True)
    # compute_missing embeds each new image once, however many boxes it is asked
    lazy_seg = Counting()
    lazy = CachedCoarse(tmp_path / "lazy", lazy_seg, compute_missing=True)
    image, _ = list_pairs(data)[0].load()
    for box in [(0, 0, 40, 40), (5, 5, 60, 60), (0, 0, 40, 40), (10, 0, 90, 70)]:
        lazy("img0", image, box)
    assert lazy_seg.encoder_calls == 1 and lazy_seg.predictions == 3


def test_tiny_sam_end_to_end_through_the_cache(tmp_path):
    torch = pytest.importorskip("torch")
    from dissam.coarse import build_tiny_sam
    ckpt = tmp_path / "tiny.pth"
    torch.save(build_tiny_sam(seed=3).state_dict(), ckpt)
    seg = build_coarse("sam", checkpoint=ckpt, model_type="tiny", device="cpu")
    forwards = []
    seg.model.image_encoder.register_forward_hook(lambda *a: forwards.append(1))
    data = make_split(tmp_path / "split")
    manifest = cache_masks(seg, data, tmp_path / "cache", enrichment="components", progress=False)
    assert len(forwards) == manifest["encoder_calls"] == len(N_COMPONENTS)
    assert manifest["boxes"] == sum(N_COMPONENTS) and manifest["segmenter"].startswith("sam|")
    same = build_coarse("sam", model=build_tiny_sam(seed=3), device="cpu")  # same weights: shares entries
    assert cache_masks(same, data, tmp_path / "cache", enrichment="components", progress=False)["encoder_calls"] == 0
    other = build_coarse("sam", model=build_tiny_sam(seed=4), device="cpu")
    assert cache_masks(other, data, tmp_path / "cache", enrichment="components", progress=False)["cache_hits"] == 0


def test_a_complete_split_is_not_read_again(tmp_path, monkeypatch):
    from dissam.data.folders import Pair

    data = make_split(tmp_path / "split")
    first = cache_masks(Counting(), data, tmp_path / "cache", enrichment="components", progress=False)
    assert first["complete"] and first["verified"]

    def no_load(self):
        raise AssertionError(f"{self.stem} was read again")

    with monkeypatch.context() as m:
        m.setattr(Pair, "load", no_load)
        again = cache_masks(Counting(), data, tmp_path / "cache", enrichment="components", progress=False)
    assert (again["encoder_calls"], again["computed"], again["cache_hits"]) == (0, 0, sum(N_COMPONENTS))
    assert again["samples"] == first["samples"] and not again["verified"]
    # a deleted entry, a rewritten file or verify=True sends the split back to a full pass
    (tmp_path / "cache" / first["samples"][0]["file"]).unlink()
    assert cache_masks(Counting(), data, tmp_path / "cache", enrichment="components", progress=False)["computed"] == 1
    Image.open(data / "gt" / "img1.png").save(data / "gt" / "img1.png")
    assert cache_masks(Counting(), data, tmp_path / "cache", enrichment="components", progress=False)["verified"]
    assert cache_masks(Counting(), data, tmp_path / "cache", enrichment="components", progress=False,
                       verify=True)["verified"]


def test_one_pass_serves_whole_and_enriched_boxes(tmp_path):
    from dissam.coarse.cache import cache_split

    data = make_split(tmp_path / "split")
    seg = Counting()
    whole, enriched = cache_split(seg, data, tmp_path / "one", [None, "components"], progress=False)
    assert seg.encoder_calls == len(N_COMPONENTS) == whole["encoder_calls"] + enriched["encoder_calls"]
    two = [cache_masks(Counting(), data, tmp_path / "two", enrichment=e, progress=False) for e in (None, "components")]
    for one_pass, two_passes in zip((whole, enriched), two):  # the same samples, computed boxes and hits
        for key in ("images", "boxes", "computed", "cache_hits", "samples", "enrichment"):
            assert one_pass[key] == two_passes[key], key
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png"))
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes() for f in files)


def test_read_ahead_keeps_order_and_bounds_the_queue():
    import threading

    from dissam.coarse.cache import _read_ahead

    started, lock = [], threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        return i * i

    out = []
    for value in _read_ahead(work, iter(range(20)), depth=3):
        out.append(value)
        assert len(started) <= len(out) + 3  # never more than `depth` items ahead of the consumer
    assert out == [i * i for i in range(20)]


def test_cache_stage1_builds_stage1_only_when_there_is_work(tiny_data, tmp_path, monkeypatch):
    import dataclasses

    from dissam.data.folders import Pair
    from dissam.data.splits import TRAIN_SPLIT, VAL_SPLIT
    from dissam.repro import stages
    from dissam.repro.config import dry_run, get_profile

    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path))
    profile = dataclasses.replace(get_profile("tiny"), tag="stage1")
    profile.data.root = tiny_data
    builds = []
    real_build = stages.build_stage1
    monkeypatch.setattr(stages, "build_stage1", lambda *a, **k: builds.append(1) or real_build(*a, **k))
    first = stages.cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=False)
    assert builds == [1] and set(first) == {TRAIN_SPLIT, f"{TRAIN_SPLIT}-enriched", VAL_SPLIT}
    assert first[TRAIN_SPLIT]["encoder_calls"] + first[f"{TRAIN_SPLIT}-enriched"]["encoder_calls"] == 12
    monkeypatch.setattr(Pair, "load", lambda self: (_ for _ in ()).throw(AssertionError("image read")))
    again = stages.cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=False)
    assert builds == [1]  # complete: no segmenter built, no image opened
    assert {k: m["samples"] for k, m in again.items()} == {k: m["samples"] for k, m in first.items()}
    assert all(m["encoder_calls"] == 0 and m["cache_hits"] == m["boxes"] for m in again.values())
    # a dry run shares the real run's stage-1 folder and key file
    untagged = dataclasses.replace(profile, tag="")
    assert config.coarse_cache_dir(dry_run(untagged), VAL_SPLIT) == config.coarse_cache_dir(untagged, VAL_SPLIT)
