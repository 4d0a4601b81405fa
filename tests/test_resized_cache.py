"""The resized training cache: the same bytes in memory, on disk and per item; resume; keys; cheap starts."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dissam.coarse import CachedCoarse, GrabCutSegmenter, cache_masks
from dissam.data import resized_cache
from dissam.data.datasets import RefinerDataset
from dissam.data.folders import list_pairs
from dissam.data.splits import TRAIN_SPLIT

SIZE = 40  # the tiny data is 64 px: every plane is really resized


@pytest.fixture(scope="module")
def split(tiny_data, tmp_path_factory) -> tuple[Path, CachedCoarse]:
    """The tiny training split (a private copy: tests touch files) and a reader of its GrabCut masks."""
    root = tmp_path_factory.mktemp("resized") / TRAIN_SPLIT
    shutil.copytree(tiny_data / TRAIN_SPLIT, root)
    seg = GrabCutSegmenter(iters=1)
    for enrichment in ("filtered", None):
        cache_masks(seg, root, root.parent / "stage1", enrichment=enrichment, progress=False)
    return root, CachedCoarse(root.parent / "stage1", seg.key)


def _items(ds: RefinerDataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [ds.network_tensors(*ds.arrays(i)) for i in range(len(ds))]


@pytest.mark.parametrize("in_ch,use_box", [(5, True), (5, False), (3, False)])
def test_disk_memory_and_files_give_the_same_tensors(split, tmp_path, in_ch, use_box):
    data, reader = split
    kw = dict(enrichment="filtered", augment=None, in_ch=in_ch, use_box=use_box, use_mask=in_ch == 5)
    source = reader if in_ch == 5 else None
    memory = RefinerDataset(data, source, SIZE, **kw)
    disk = RefinerDataset(data, source, SIZE, cache_dir=tmp_path, workers=2, **kw)
    files = RefinerDataset(data, source, SIZE, preload=False, **kw)
    assert (memory.storage, disk.storage, files.storage) == ("memory", "disk", "files")
    assert [(s.stem, s.index, s.box, s.hw) for s in disk.samples] == [(s.stem, s.index, s.box, s.hw) for s in memory.samples]
    for (xm, gm), (xd, gd), (xf, gf) in zip(_items(memory), _items(disk), _items(files)):
        assert torch.equal(xm, xd) and torch.equal(gm, gd)  # bit for bit
        assert torch.equal(xm, xf) and torch.equal(gm, gf)  # per item: the same resize order, so equal too
    again = RefinerDataset(data, source, SIZE, cache_dir=tmp_path, **kw)
    assert again.cache_manifest["built"] == 0 and again.cache_manifest["reused"] == len(memory.pairs)


def test_jittered_boxes_on_disk_equal_memory(split, tmp_path):
    data, reader = split
    seg = GrabCutSegmenter(iters=1)
    source = CachedCoarse(data.parent / "stage1", seg, compute_missing=True)  # jittered boxes are new
    kw = dict(enrichment="filtered", augment=None, jitter=0.2, seed=3)
    memory, disk = RefinerDataset(data, source, SIZE, **kw), RefinerDataset(data, source, SIZE, cache_dir=tmp_path, **kw)
    assert [s.box for s in memory.samples] == [s.box for s in disk.samples]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(_items(memory), _items(disk)))


def _count_builds(monkeypatch) -> list[str]:
    built: list[str] = []
    real = resized_cache.image_arrays

    def counting(pair, *args):
        built.append(pair.stem)
        return real(pair, *args)

    monkeypatch.setattr(resized_cache, "image_arrays", counting)
    return built


def test_an_interrupted_build_is_completed_not_rebuilt(split, tmp_path, monkeypatch):
    data, reader = split
    real, calls = resized_cache.image_arrays, []

    def failing(pair, *args):
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(pair.stem)
        return real(pair, *args)

    monkeypatch.setattr(resized_cache, "image_arrays", failing)
    with pytest.raises(KeyboardInterrupt):
        RefinerDataset(data, reader, SIZE, augment=None, cache_dir=tmp_path, workers=1)
    monkeypatch.setattr(resized_cache, "image_arrays", real)
    built = _count_builds(monkeypatch)
    resumed = RefinerDataset(data, reader, SIZE, augment=None, cache_dir=tmp_path, workers=1)
    n = len(list_pairs(data))
    assert len(built) == n - 5 and not set(built) & set(calls)
    assert resumed.cache_manifest["reused"] == 5 and resumed.cache_manifest["built"] == n - 5
    # the manifest written in the interruption's `finally` is gone too (a hard kill): the records beside
    # the entries still save the finished images
    (Path(resumed.cache_manifest["set_dir"]) / "manifest.json").unlink()
    built.clear()
    again = RefinerDataset(data, reader, SIZE, augment=None, cache_dir=tmp_path, workers=1)
    assert built == [] and again.cache_manifest["reused"] == n
    memory = RefinerDataset(data, reader, SIZE, augment=None)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(_items(memory), _items(again)))


def test_a_changed_key_size_or_file_invalidates(split, tmp_path, monkeypatch):
    data, reader = split
    n = len(list_pairs(data))
    first = RefinerDataset(data, reader, SIZE, augment=None, cache_dir=tmp_path)
    built = _count_builds(monkeypatch)
    other_key = CachedCoarse(reader.store.cache_dir, GrabCutSegmenter(iters=1).key + "|changed")
    other_key.masks = reader.masks  # same masks, another stage-1 key: the set must not be reused
    changed = RefinerDataset(data, other_key, SIZE, augment=None, cache_dir=tmp_path, workers=1)
    assert len(built) == n and changed.cache_manifest["set_dir"] != first.cache_manifest["set_dir"]
    built.clear()
    RefinerDataset(data, reader, SIZE + 8, augment=None, cache_dir=tmp_path)
    assert len(built) == n
    built.clear()
    path = list_pairs(data)[2].image_path
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the same bytes, rewritten
    RefinerDataset(data, reader, SIZE, augment=None, cache_dir=tmp_path)
    assert built == [list_pairs(data)[2].stem]


def test_a_start_opens_no_entry(split, tmp_path, monkeypatch):
    data, reader = split
    built = RefinerDataset(data, reader, SIZE, augment=None, cache_dir=tmp_path)
    opened: list[str] = []
    real_read_text = Path.read_text

    def read_text(self, *a, **k):
        opened.append(self.name)
        return real_read_text(self, *a, **k)

    def no(*a, **k):
        raise AssertionError("a start read an entry")

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(np, "load", no)
    monkeypatch.setattr(resized_cache, "image_arrays", no)
    again = RefinerDataset(data, reader, SIZE, augment=None, cache_dir=tmp_path)
    assert opened == ["manifest.json"] and again.cache_manifest["reused"] == len(built.pairs)
    monkeypatch.undo()
    assert torch.equal(again[0]["input"], built[0]["input"])


def test_disk_storage_needs_a_keyed_source(split, tmp_path):
    data, _ = split
    with pytest.raises(ValueError, match="key"):
        RefinerDataset(data, lambda stem, image, box: np.zeros(image.shape[:2], np.uint8), SIZE, cache_dir=tmp_path)


def test_build_training_cache_reports_its_work(tiny_data, tmp_path, monkeypatch):
    import dataclasses

    from dissam.repro import stages
    from dissam.repro.config import get_profile

    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path))
    profile = dataclasses.replace(get_profile("tiny"), tag="resized")
    profile.data.root = tiny_data
    stages.cache_stage1(profile, [TRAIN_SPLIT], progress=False)
    first = stages.build_training_cache(profile, TRAIN_SPLIT, train=True, progress=False, reads=4)
    assert first["images"] == 12 == first["built"] and first["samples"] > 12 and first["bytes"] > 0
    assert first["read_samples_per_second"] > 0 and first["channels"] == ["coarse", "box", "target"]
    again = stages.build_training_cache(profile, TRAIN_SPLIT, train=True, progress=False, reads=1)
    assert again["built"] == 0 and again["reused"] == 12
