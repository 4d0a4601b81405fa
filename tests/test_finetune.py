"""Fine-tuning switches (TrainConfig.trainable, freeze_batchnorm) and the photo profile that uses them."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dissam.data.procedural import generate_dataset
from dissam.data.splits import TRAIN_SPLIT, VAL_SPLIT
from dissam.losses import dis_sam_loss
from dissam.model import build_refiner
from dissam.model.checkpoint import load_refiner, save_refiner
from dissam.model.init import (FrozenBatchNorm2d, freeze_for_finetuning, initial_refiner, write_random_isnet,
                               zero_side_outputs)
from dissam.model.onnx_import import has_identity_batchnorms, identity_batchnorms
from dissam.repro import stages
from dissam.repro.config import PHOTO_TRAINABLE, get_profile, runs_root
from dissam.repro.train import RunSpec, train_refiner
from tests.helpers import saved_official_isnet

WIDTH = 0.125


@pytest.fixture
def published(tmp_path):
    return saved_official_isnet(tmp_path / "isnet.pth", WIDTH, seed=5)


def _step(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, gt: torch.Tensor) -> None:
    optimizer = torch.optim.Adam(params, lr=1e-2)
    maps, _ = model(x)
    loss, _ = dis_sam_loss(maps, gt, model=model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_only_the_named_layers_train_and_batchnorms_keep_their_statistics(published):
    net, path = published
    model = initial_refiner("isnet", 5, WIDTH, isnet_checkpoint=path)
    params = freeze_for_finetuning(model, PHOTO_TRAINABLE, freeze_batchnorm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # what the training loop does after each validation
    assert all(not m.training for m in model.modules() if isinstance(m, FrozenBatchNorm2d))
    x, gt = torch.rand(2, 5, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    with torch.no_grad():  # in train mode, step 0 is still the published network
        torch.testing.assert_close(model(x)[0][0], net(x[:, :3])[0][0], rtol=0, atol=1e-6)
    _step(model, params, x, gt)

    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(_photo_trainable(k) for k in changed)  # no frozen weight moved
    assert not any("running_" in k or "num_batches" in k for k in changed)  # nor any BatchNorm statistic
    assert {"conv_in.weight", "stage1d.rebnconvin.conv_s1.weight", "side1.weight"} <= changed
    assert not any(k.startswith(("stage1.", "stage6.")) for k in changed)  # "stage1" is not "stage1d"
    stem = after["conv_in.weight"]
    assert torch.equal(stem[:, :3], before["conv_in.weight"][:, :3]) and stem[:, 3:].any()  # prompt filters alone
    assert len(params) == sum(_photo_trainable(k) for k, _ in model.named_parameters())


def _photo_trainable(key: str) -> bool:
    """Whether a state-dict key lies in PHOTO_TRAINABLE's layers (the stem's weight for its prompt filters)."""
    return key == "conv_in.weight" or key.split(".")[0] in PHOTO_TRAINABLE or key.startswith("side")


def test_with_zero_side_outputs_the_refiner_starts_as_its_stage1(published):
    _, path = published
    model = zero_side_outputs(initial_refiner("isnet", 5, WIDTH, coarse_prior=4.0, isnet_checkpoint=path))
    x = torch.rand(2, 5, 64, 64)
    x[:, 3] = (x[:, 3] > 0.5).float()  # the coarse mask
    with torch.no_grad():
        maps, _ = model.eval()(x)
    for prob in maps:  # sigmoid of the prior alone, whatever the image
        assert torch.equal(prob, torch.sigmoid(4.0 * (2 * x[:, 3:4] - 1)))


def test_without_freezing_batchnorms_update_and_every_layer_trains(published):
    _, path = published
    model = initial_refiner("isnet", 5, WIDTH, isnet_checkpoint=path)
    params = freeze_for_finetuning(model)
    assert len(params) == len(list(model.parameters()))
    before = model.stage1.rebnconvin.bn_s1.running_mean.clone()
    _step(model, params, torch.rand(2, 5, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float())
    assert not torch.equal(before, model.stage1.rebnconvin.bn_s1.running_mean)


def test_a_prefix_that_names_no_layer_is_an_error():
    with pytest.raises(ValueError, match="encoder"):
        freeze_for_finetuning(build_refiner(width=WIDTH), ("conv_in", "encoder"))


def test_the_photo_profile_fine_tunes_the_published_isnet(monkeypatch, tmp_path):
    monkeypatch.setenv("DISSAM_ISNET_CHECKPOINT", str(tmp_path / "isnet-general-use.pth"))
    photo = get_profile("photo")
    assert photo.variant.refiner_init == "isnet"
    assert photo.baselines.isnet_checkpoint == tmp_path / "isnet-general-use.pth"
    assert photo.train.width == 1.0 and photo.train.freeze_batchnorm and photo.train.trainable == PHOTO_TRAINABLE
    assert not photo.train.use_gt_encoder
    assert photo.train.coarse_prior > 0 and photo.train.zero_side_outputs  # step 0 is its stage 1
    assert photo.device == "cpu" and photo.coarse.kind == "grabcut" and photo.run_dir.name == "photo"
    monkeypatch.delenv("DISSAM_ISNET_CHECKPOINT")
    assert get_profile("photo").baselines.isnet_checkpoint.name.startswith("isnet-general-use")  # the user cache


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny profile with its data and stage-1 masks in a folder of its own, and a random published
    IS-Net file at its width."""
    root = tmp_path_factory.mktemp("finetune")
    tiny = get_profile("tiny")
    profile = dataclasses.replace(tiny, data=dataclasses.replace(tiny.data, root=root / "data"))
    generate_dataset(profile.data.root, profile.data, progress=False)
    with runs_root(root / "runs"):
        stages.cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=False)
    return profile, root


def _fine_tune(tiny_run, name: str, isnet, **train) -> tuple[dict, dict]:
    """Three iterations of a tiny run that starts from ``isnet``: (the file's state, the last checkpoint's)."""
    tiny, root = tiny_run
    profile = dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, use_gt_encoder=False, **train),
                                  variant=dataclasses.replace(tiny.variant, refiner_init="isnet"),
                                  baselines=dataclasses.replace(tiny.baselines, isnet_checkpoint=isnet))
    with runs_root(root / "runs"):
        result = train_refiner(profile, RunSpec(name=name, max_iters=3), progress=False)
    return load_refiner(isnet, in_ch=3).state_dict(), torch.load(result.last_checkpoint, weights_only=True)["model"]


def test_a_run_with_the_photo_switches_moves_only_its_trainable_layers(tiny_run, tmp_path):
    """The switches reach the training loop: after a tiny run, the checkpoint's encoder, the stem's RGB
    filters and every BatchNorm statistic are the published file's, and its decoder is not."""
    isnet = write_random_isnet(tmp_path / "isnet.pth", tiny_run[0].train.width)
    photo = get_profile("photo").train
    start, trained = _fine_tune(tiny_run, "photo_switches", isnet, **{k: getattr(photo, k) for k in (
        "trainable", "freeze_batchnorm", "coarse_prior", "zero_side_outputs")})
    moved = {k for k in start if not torch.equal(start[k], trained[k][:, :3] if k == "conv_in.weight" else trained[k])}
    assert {"stage2d.rebnconvin.conv_s1.weight", "side1.bias"} <= moved
    assert all(_photo_trainable(k) and k != "conv_in.weight" for k in moved)  # the stem's RGB filters as loaded
    assert trained["conv_in.weight"][:, 3:].any()  # the mask and box filters left zero


def test_a_start_with_folded_batchnorms_keeps_them_frozen(tiny_run, tmp_path):
    """The converted general-use weights have their BatchNorms folded (identity BatchNorms): a fine-tune
    from them keeps those statistics even when the profile does not ask for it (the paper profile), where
    a file with real statistics trains them, as IS-Net does."""
    width = tiny_run[0].train.width
    folded = save_refiner(identity_batchnorms(build_refiner(in_ch=3, width=width)), tmp_path / "folded.pth")
    start, trained = _fine_tune(tiny_run, "folded", folded)
    assert has_identity_batchnorms(load_refiner(folded))
    stats = [k for k in start if "running_" in k]
    assert stats and all(torch.equal(start[k], trained[k]) for k in stats)
    assert not torch.equal(start["stage1.rebnconvin.conv_s1.weight"], trained["stage1.rebnconvin.conv_s1.weight"])

    real = write_random_isnet(tmp_path / "isnet.pth", width)
    start, trained = _fine_tune(tiny_run, "real_statistics", real)
    assert not all(torch.equal(start[k], trained[k]) for k in stats)
