"""The experiment list: Table III's row 1, the main-budget option, and the DIS-SAM\u2020 (HQSeg-44K) run."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from dissam.repro import runs, stages
from dissam.repro.config import AblationConfig, BaselineConfig, get_profile
from dissam.data.folders import list_pairs
from dissam.data.hqseg import HQSEG_SOURCES
from dissam.data.procedural import generate_dataset
from dissam.data.splits import TRAIN_SPLIT, VAL_SPLIT
from dissam.model.checkpoint import load_checkpoint


def test_table_three_row_one_is_the_published_isnet_when_given(tmp_path):
    tiny = get_profile("tiny")
    label, method = runs.ablation_row(tiny, runs.ABLATIONS[0])
    assert method == runs.ISNET_RUN and "from scratch" in label
    assert runs.table_three_runs(tiny)[:5] == [a.name for a in runs.ABLATIONS]
    given = dataclasses.replace(tiny, baselines=BaselineConfig(isnet_checkpoint=tmp_path / "isnet.pth"))
    label, method = runs.ablation_row(given, runs.ABLATIONS[0], seed=1)
    assert method == runs.ISNET_OFFICIAL and "published isnet.pth" in label
    assert runs.ISNET_RUN not in runs.table_three_runs(given) and runs.ISNET_OFFICIAL not in runs.table_three_runs(given)
    assert runs.ablation_row(given, runs.ABLATIONS[2], seed=1) == (runs.ABLATIONS[2].label, "ablation_mask_seed1")


def test_main_budget_makes_the_last_row_the_main_run():
    paper = get_profile("paper")
    assert runs.run_name(paper, runs.DISSAM_SHORT_RUN) == runs.DISSAM_SHORT_RUN  # 20k ablation budget
    main = dataclasses.replace(paper, ablation=dataclasses.replace(paper.ablation, main_budget=True, batch_size=2))
    assert runs.ablation_budget(main) == (paper.train.max_iters, paper.train.batch_size)
    assert runs.run_name(main, runs.DISSAM_SHORT_RUN) == runs.MAIN
    assert runs.ABLATIONS[1].spec(main).max_iters == paper.train.max_iters
    assert runs.ablation_profile(main, 0).train.batch_size == paper.train.batch_size
    assert not AblationConfig().main_budget and not get_profile("smoke").ablation.main_budget


def _hqseg_folder(root, size=64):
    rng = np.random.default_rng(0)
    for k, source in enumerate(HQSEG_SOURCES):
        for sub in (source.im_dir, source.gt_dir):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for n in range(2):
            gt = np.zeros((size, size), np.uint8)
            gt[8 + 4 * k:40 + n, 10:50 - k] = 255
            image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            image[gt > 0] = 200
            Image.fromarray(image).save(root / source.im_dir / f"{n}{source.im_ext}", quality=95)
            Image.fromarray(gt).save(root / source.gt_dir / f"{n}{source.gt_ext}")


def test_hqseg_run_is_listed_only_with_the_data_and_trains_on_it(tmp_path, monkeypatch):
    monkeypatch.setattr("dissam.repro.config.RUNS_ROOT", tmp_path / "runs")
    profile = get_profile("tiny")
    assert runs.hqseg_runs(profile) == []
    generate_dataset(tmp_path / "data", profile.data, progress=False)
    _hqseg_folder(tmp_path / "hqseg")
    profile = dataclasses.replace(profile, data=dataclasses.replace(profile.data, root=tmp_path / "data",
                                                                    hqseg_root=tmp_path / "hqseg"))
    assert runs.hqseg_runs(profile) == [runs.HQSEG_RUN]
    assert runs.hqseg_spec(profile).max_iters == 2 * profile.train.max_iters
    stages.cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=False)
    from dissam.repro.train import train_gt_encoder

    train_gt_encoder(profile, progress=False)
    path = runs.train_runs(profile, runs.hqseg_runs(profile), progress=False)[runs.HQSEG_RUN]
    last = load_checkpoint(runs.RunSpec(name=runs.HQSEG_RUN).last_checkpoint(profile))
    assert path.exists() and last["iteration"] == 2 * profile.train.max_iters
    assert any((profile.cache_dir / "HQSeg-44K").rglob("*.png"))  # stage 1 ran on HQSeg-44K's images
    runs.train_run(profile, runs.MAIN, progress=False)
    methods = runs.dissam_methods(profile, short=False)
    assert methods["DIS-SAM\u2020 (HQSeg-44K, 8 it)"] == runs.HQSEG_RUN and runs.MAIN in methods.values()
    assert isinstance(last["model"]["conv_in.weight"], torch.Tensor)


def test_the_general_use_isnet_is_a_zero_shot_row_when_its_weights_are_found(tmp_path, monkeypatch, tiny_data):
    """Tables I/II's row of the published general-use IS-Net: there when its weights are found (given, or
    in the user cache where `dissam weights isnet` puts them), named by its input side, and its maps are
    what PublishedISNet saves for each image (RGB alone, Inference.py's min-max map at the GT's size)."""
    from dissam.model.checkpoint import save_refiner
    from dissam.model.isnet import build_refiner
    from dissam.model.published import published_checkpoint_path
    from dissam.model.published_predict import PublishedISNet
    from dissam.repro.config import runs_root

    monkeypatch.setenv("DISSAM_CACHE_DIR", str(tmp_path / "cache"))
    tiny = get_profile("tiny")
    assert runs.general_isnet_weights(tiny) is None
    torch.manual_seed(0)
    weights = save_refiner(build_refiner(in_ch=3, width=0.0625), published_checkpoint_path())
    assert runs.general_isnet_weights(tiny) == weights
    given = dataclasses.replace(tiny, data=dataclasses.replace(tiny.data, root=tiny_data),
                                baselines=BaselineConfig(isnet_checkpoint=tmp_path / "isnet.pth", general_isnet_size=96))
    methods = runs.baseline_methods(given)
    assert methods["IS-Net (published general-use weights), zero-shot, 96 px input"] == "isnet-general-96"
    assert list(methods)[-1].startswith("IS-Net (published general-use") and runs.checkpoint_of(given, "isnet-general-96") == weights
    with runs_root(tmp_path / "runs"):
        maps = runs.predictions(given, "isnet-general-96", VAL_SPLIT)
    net = PublishedISNet.from_checkpoint(weights, input_size=96)
    for pair in list_pairs(tiny_data / VAL_SPLIT):
        image, gt = pair.load()
        assert maps[pair.stem].shape == gt.shape
        assert np.abs(maps[pair.stem].astype(int) - net.predict(image).astype(int)).max() <= 1
    missing = dataclasses.replace(given, baselines=BaselineConfig(general_isnet_checkpoint=tmp_path / "absent.pth"))
    with pytest.raises(FileNotFoundError, match="absent.pth"):  # given but absent: an error, not a missing row
        runs.general_isnet_weights(missing)
