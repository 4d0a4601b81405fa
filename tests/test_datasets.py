"""The refiner's Dataset: input layout and normalisation, flips, ablation switches, enrichment counts."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dissam.data.datasets import CoarseSource, MaskFolderSource, RefinerDataset, SegmenterSource
from dissam.data.enrichment import connected_components, targets_for
from dissam.data.folders import list_pairs
from dissam.data.images import DataError, read_image, read_mask
from dissam.data.prompts import box_channel
from dissam.data.splits import TRAIN_SPLIT
from dissam.data.transforms import resize
from dissam.repro import config


class StripedBox:
    """A deterministic stand-in for stage 1: every other row of the box (depends on the box, as SAM does)."""

    def __init__(self) -> None:
        self.images = 0

    def set_image(self, image):
        self.image, self.images = image, self.images + 1

    def predict(self, box):
        x0, y0, x1, y1 = box
        m = np.zeros(self.image.shape[:2], np.uint8)
        m[y0:y1:2, x0:x1] = 255
        return m


@pytest.fixture(scope="module")
def train_dir(tiny_data):
    return tiny_data / TRAIN_SPLIT


@pytest.fixture(scope="module")
def source():
    return SegmenterSource(StripedBox())


def test_item_shapes_types_and_normalisation(train_dir, source):
    ds = RefinerDataset(train_dir, source, 48, augment=None)
    item = ds[0]
    assert item["input"].shape == (5, 48, 48) and item["input"].dtype == torch.float32
    assert item["gt"].shape == (1, 48, 48) and item["gt"].dtype == torch.float32
    s = ds.samples[0]
    target = ds.load(0).gt.astype(np.float32)  # soft, as the references: bilinear, truncated, /255
    reference = torch.nn.functional.interpolate(torch.from_numpy(target)[None, None], size=(48, 48),
                                                mode="bilinear", align_corners=False).to(torch.uint8) / 255.0
    assert torch.equal(item["gt"], reference[0])
    image = read_image(s.pair.image_path)
    expected_rgb = resize(image, 48).astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5
    assert np.allclose(item["input"][:3].numpy(), expected_rgb, atol=1e-6)
    expected_mask = resize(source(s.stem, image, s.box), 48).astype(np.float32) / 255.0
    assert np.allclose(item["input"][3].numpy(), expected_mask, atol=1e-6)
    expected_box = resize(box_channel(s.box, *image.shape[:2]), 48).astype(np.float32) / 255.0
    assert np.allclose(item["input"][4].numpy(), expected_box, atol=1e-6)
    assert item["stem"] == s.stem and item["index"] == s.index
    assert tuple(item["box"].tolist()) == s.box and tuple(item["hw"].tolist()) == image.shape[:2]


def test_each_sample_targets_its_own_component(train_dir, source):
    ds = RefinerDataset(train_dir, source, 64, augment=None)  # tiny data is 64 px: no resizing
    multi = [i for i, s in enumerate(ds.samples) if len(connected_components(read_mask(s.pair.gt_path))) > 1]
    assert multi, "the tiny training split should hold a multi-object image"
    s = ds.samples[multi[0]]
    gt = read_mask(s.pair.gt_path)
    target = next(t for t in targets_for(gt, ds.enrichment) if t.index == s.index)
    item = ds[multi[0]]
    assert np.array_equal(item["gt"][0].numpy() > 0.5, target.mask)
    assert (item["gt"][0].numpy() > 0.5).sum() < (gt > 127).sum()  # other components are background


def test_preloaded_and_lazy_items_agree(train_dir, source):
    eager = RefinerDataset(train_dir, source, 40, augment=None, preload=True)
    lazy = RefinerDataset(train_dir, source, 40, augment=None, preload=False)
    assert len(eager) == len(lazy)
    for i in range(len(eager)):
        a, b = eager[i], lazy[i]
        assert torch.equal(a["input"], b["input"]) and torch.equal(a["gt"], b["gt"]) and torch.equal(a["box"], b["box"])


@pytest.mark.parametrize("augment", ["hflip", "hvflip"])
def test_flips_are_consistent_across_input_gt_and_box(train_dir, source, augment):
    plain = RefinerDataset(train_dir, source, 64, augment=None)
    aug = RefinerDataset(train_dir, source, 64, augment=augment)
    torch.manual_seed(0)
    seen = {}
    for _ in range(200):
        i = 1
        a, p = aug[i], plain[i]
        x0, y0, x1, y1 = p["box"].tolist()
        h, w = p["hw"].tolist()
        for hf in (False, True):
            for vf in (False, True):
                x, g, b = p["input"], p["gt"], [x0, y0, x1, y1]
                if hf:
                    x, g, b = x.flip(-1), g.flip(-1), [w - b[2], b[1], w - b[0], b[3]]
                if vf:
                    x, g, b = x.flip(-2), g.flip(-2), [b[0], h - b[3], b[2], h - b[1]]
                if torch.equal(a["input"], x) and torch.equal(a["gt"], g) and a["box"].tolist() == b:
                    seen[(hf, vf)] = seen.get((hf, vf), 0) + 1
    assert sum(seen.values()) >= 200  # every draw is one of the allowed flips, all channels alike
    if augment == "hflip":
        assert set(seen) == {(False, False), (True, False)} and all(60 <= v <= 140 for v in seen.values())
    else:
        assert len(seen) == 4 and all(25 <= v <= 75 for v in seen.values())


def test_draws_follow_torch_seed(train_dir, source):
    ds = RefinerDataset(train_dir, source, 32, augment="hvflip")
    torch.manual_seed(5)
    first = [ds[0]["input"] for _ in range(8)]
    torch.manual_seed(5)
    assert all(torch.equal(a, ds[0]["input"]) for a in first)


def test_ablation_switches_zero_their_channels(train_dir, source):
    no_mask = RefinerDataset(train_dir, None, 32, use_mask=False, augment=None)
    no_box = RefinerDataset(train_dir, source, 32, use_box=False, augment=None)
    both = RefinerDataset(train_dir, source, 32, augment=None)
    assert torch.count_nonzero(no_mask[0]["input"][3]) == 0 and torch.count_nonzero(no_mask[0]["input"][4]) > 0
    assert torch.count_nonzero(no_box[0]["input"][4]) == 0 and torch.count_nonzero(no_box[0]["input"][3]) > 0
    assert torch.equal(no_mask[0]["input"][4], both[0]["input"][4])
    rgb_only = RefinerDataset(train_dir, None, 32, in_ch=3, augment=None)
    assert rgb_only[0]["input"].shape == (3, 32, 32)
    assert torch.equal(rgb_only[0]["input"], both[0]["input"][:3])
    with pytest.raises(ValueError, match="coarse source"):
        RefinerDataset(train_dir, None, 32)


def test_enrichment_counts(train_dir, source, tiny_data_config):
    gts = [read_mask(p.gt_path) for p in list_pairs(train_dir)]
    paper = RefinerDataset(train_dir, source, 32, enrichment="components")
    assert paper.counts == {"images": tiny_data_config.n_train, "samples": sum(len(connected_components(g)) for g in gts)}
    whole = RefinerDataset(train_dir, source, 32, enrichment=None, augment=None)
    assert whole.counts == {"images": tiny_data_config.n_train, "samples": tiny_data_config.n_train}
    assert all(s.index == -1 for s in whole.samples)
    authors = RefinerDataset(train_dir, source, 32, enrichment="filtered")
    assert authors.counts["samples"] == sum(len(targets_for(g, "filtered")) for g in gts)
    with pytest.raises(ValueError):
        RefinerDataset(train_dir, source, 32, enrichment="all")
    with pytest.raises(ValueError):
        RefinerDataset(train_dir, source, 32, augment="rotate")


def test_stage1_is_asked_once_per_image_and_with_the_prompt_box(train_dir):
    seg = StripedBox()
    ds = RefinerDataset(train_dir, SegmenterSource(seg), 32, jitter=0.2, seed=1)
    assert seg.images == ds.counts["images"]
    again = RefinerDataset(train_dir, SegmenterSource(StripedBox()), 32, jitter=0.2, seed=1)
    other = RefinerDataset(train_dir, SegmenterSource(StripedBox()), 32, jitter=0.2, seed=2)
    assert [s.box for s in ds.samples] == [s.box for s in again.samples] != [s.box for s in other.samples]
    tight = RefinerDataset(train_dir, SegmenterSource(StripedBox()), 32)
    for s, t in zip(ds.samples, tight.samples):
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 < x1 <= s.hw[1] and 0 <= y0 < y1 <= s.hw[0]
        assert s.stem == t.stem and s.index == t.index


def test_mask_folder_source(tmp_path, train_dir):
    pairs = list_pairs(train_dir)[:3]
    for p in pairs:
        gt = read_mask(p.gt_path)
        cv2.imwrite(str(tmp_path / f"{p.stem}.png"), cv2.dilate(gt, np.ones((5, 5), np.uint8)))
    src = MaskFolderSource(tmp_path)
    assert isinstance(src, CoarseSource)
    ds = RefinerDataset(pairs, src, 64, augment=None)
    s = ds.samples[0]
    assert np.array_equal(ds[0]["input"][3].numpy() > 0.5, cv2.dilate(read_mask(s.pair.gt_path), np.ones((5, 5), np.uint8)) > 127)
    cv2.imwrite(str(tmp_path / f"{pairs[1].stem}.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=pairs[1].stem):
        RefinerDataset(pairs, src, 64)
    with pytest.raises(DataError, match="missing file"):
        RefinerDataset(list_pairs(train_dir)[3:4], src, 64)


def test_dataloader_batches(train_dir, source):
    ds = RefinerDataset(train_dir, source, 32)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=True)))
    assert batch["input"].shape == (4, 5, 32, 32) and batch["gt"].shape == (4, 1, 32, 32)
    assert batch["box"].shape == (4, 4) and len(batch["stem"]) == 4


def test_one_builder_for_a_profiles_split(tiny_data, tmp_path, monkeypatch):
    """refiner_dataset: training (variant's enrichment and flips) or evaluation (one unaugmented sample
    per image) samples of a run's split, stage-1 masks from its cache, preloaded unless reading DIS5K."""
    import dataclasses

    from dissam.data.splits import TRAIN_SPLIT, VAL_SPLIT
    from dissam.repro import stages
    from dissam.repro.config import get_profile
    from dissam.repro.stages import refiner_dataset
    from dissam.variant import Variant

    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path))
    profile = dataclasses.replace(get_profile("tiny"), tag="builder")
    profile.data.root = tiny_data
    train = refiner_dataset(profile, TRAIN_SPLIT, train=True, use_mask=False)
    assert (train.enrichment, train.augment, train.size, train.storage) == ("filtered", "hflip", 64, "memory")
    assert len(train) > len(train.pairs) == 12
    whole = refiner_dataset(profile, TRAIN_SPLIT, train=True, enrich=False, use_mask=False)
    assert whole.enrichment is None and whole.augment == "hflip" and len(whole) == 12
    gt_only = refiner_dataset(profile, VAL_SPLIT, use_box=False, use_mask=False, in_ch=3, size=32)
    assert (gt_only.enrichment, gt_only.augment, gt_only.in_ch, gt_only.size, len(gt_only)) == (None, None, 3, 32, 4)
    assert gt_only[0]["input"].shape == (3, 32, 32) and gt_only.coarse is None
    authors = dataclasses.replace(profile, variant=Variant.authors_code())
    assert refiner_dataset(authors, TRAIN_SPLIT, train=True, use_mask=False).augment == "hvflip"
    unflipped = dataclasses.replace(profile, variant=dataclasses.replace(profile.variant, augment="none"))
    assert refiner_dataset(unflipped, TRAIN_SPLIT, train=True, use_mask=False).augment is None
    paper = dataclasses.replace(profile, name="paper")
    on_disk = refiner_dataset(paper, VAL_SPLIT, use_mask=False)
    assert on_disk.storage == "disk" and str(config.resized_cache_dir(paper, VAL_SPLIT)) in on_disk.cache_manifest["set_dir"]
    stages.cache_stage1(profile, [VAL_SPLIT], progress=False)
    val = refiner_dataset(profile, VAL_SPLIT)
    assert val.use_mask and val.use_box and val.coarse.key == stages.stage1_key(profile)
    assert float(val[0]["input"][3].max()) > 0  # the cached stage-1 mask
