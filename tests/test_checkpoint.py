"""Checkpoints: our format round-trips, official IS-Net state dicts load (3 -> 5 channels too), and
every bad file is a CheckpointError naming the file and the mismatch."""
from __future__ import annotations

import os

import pytest
import torch

from dissam.model import build_gt_encoder, build_refiner
from dissam.model.checkpoint import (CheckpointError, atomic_torch_save, load_checkpoint, load_gt_encoder,
                                     load_refiner, save_gt_encoder, save_refiner)
from helpers import randomised_batchnorm

W = 0.125


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_atomic_save_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    with pytest.raises(Exception):
        atomic_torch_save({"bad": lambda: None}, path)  # unpicklable: fails mid-write
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(path.parent) == ["ckpt.pt"]


def _fail_mid_write(fh) -> None:
    fh.write(b"x")
    raise RuntimeError("failed mid-write")


def test_checkpoints_and_the_stage1_cache_share_one_atomic_writer(tmp_path):
    from dissam import fileio
    from dissam.coarse import cache

    assert cache.atomic_write_bytes is fileio.atomic_write_bytes
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    for durable in (True, False):
        path = fileio.atomic_write_bytes(tmp_path / f"d{durable}" / "f.bin", b"abc", durable=durable)
        assert path.read_bytes() == b"abc"
        assert path.stat().st_mode == plain.stat().st_mode  # the usual permissions, not mkstemp's 0600
        with pytest.raises(RuntimeError, match="mid-write"):
            fileio.atomic_write(path, _fail_mid_write, durable=durable)
        assert path.read_bytes() == b"abc" and os.listdir(path.parent) == ["f.bin"]


def test_refiner_round_trip_keeps_config_and_extras(tmp_path):
    model = randomised_batchnorm(build_refiner(5, W))
    path = save_refiner(model, tmp_path / "r.pt", iteration=7, train_config={"lr": 1e-3})
    raw = load_checkpoint(path)
    assert raw["format"] == "dissam/v1" and raw["model_config"] == {"in_ch": 5, "width": W}
    assert raw["iteration"] == 7 and raw["train_config"] == {"lr": 1e-3}
    loaded = load_refiner(path)
    assert loaded.config == model.config and not loaded.training and _same_state(model, loaded)
    x = torch.randn(1, 5, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0][0], model(x)[0][0])
    with pytest.raises(ValueError, match="reserved"):
        save_refiner(model, tmp_path / "x.pt", format="other")


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "ddp"])
def test_official_style_state_dicts_load(tmp_path, wrap):
    model = randomised_batchnorm(build_refiner(5, W))
    state = model.state_dict()
    obj = {"plain": state, "model": {"model": state, "epoch": 3}, "state_dict": {"state_dict": state},
           "ddp": {f"module.{k}": v for k, v in state.items()}}[wrap]
    torch.save(obj, tmp_path / "isnet.pth")
    loaded = load_refiner(tmp_path / "isnet.pth")
    assert loaded.config == {"in_ch": 5, "width": W} and _same_state(model, loaded)


def test_three_channel_isnet_widens_to_five_with_zero_extra_channels(tmp_path):
    rgb_model = randomised_batchnorm(build_refiner(3, W))
    torch.save(rgb_model.state_dict(), tmp_path / "isnet_rgb.pth")
    model = load_refiner(tmp_path / "isnet_rgb.pth")
    assert model.config["in_ch"] == 5
    stem = model.conv_in.weight
    assert torch.equal(stem[:, :3], rgb_model.conv_in.weight) and not stem[:, 3:].any()
    x = torch.randn(1, 5, 32, 32)
    with torch.no_grad():  # the extra channels carry zero weight: same output as IS-Net on RGB
        assert torch.allclose(model.predict(x), rgb_model.predict(x[:, :3]), atol=1e-6)
    assert load_refiner(tmp_path / "isnet_rgb.pth", in_ch=3).config["in_ch"] == 3


def test_full_width_official_checkpoint_loads(tmp_path):
    """The 44M-parameter official layout, as a 3-channel IS-Net file, into the 5-channel refiner."""
    torch.manual_seed(0)
    official = build_refiner(3, 1.0)
    torch.save(official.state_dict(), tmp_path / "isnet-general-use.pth")
    model = load_refiner(tmp_path / "isnet-general-use.pth")
    assert model.config == {"in_ch": 5, "width": 1.0}
    assert torch.equal(model.stage6.rebnconv4.conv_s1.weight, official.stage6.rebnconv4.conv_s1.weight)


def test_gt_encoder_round_trip_and_official(tmp_path):
    enc = randomised_batchnorm(build_gt_encoder(W))
    loaded = load_gt_encoder(save_gt_encoder(enc, tmp_path / "gt.pt"))
    assert loaded.config == {"width": W} and _same_state(enc, loaded)
    torch.save({f"module.{k}": v for k, v in enc.state_dict().items()}, tmp_path / "gt_official.pth")
    assert _same_state(enc, load_gt_encoder(tmp_path / "gt_official.pth"))
    with pytest.raises(CheckpointError, match="expected a refiner checkpoint"):
        load_refiner(tmp_path / "gt.pt")
    torch.save(build_refiner(5, W).state_dict(), tmp_path / "plain_refiner.pth")
    with pytest.raises(CheckpointError, match="conv_in.conv.weight"):
        load_gt_encoder(tmp_path / "plain_refiner.pth")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as err:
        load_refiner(tmp_path / "nope.pt")
    assert "nope.pt" in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_refiner(tmp_path / "junk.pt")
    good = save_refiner(build_refiner(5, W), tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_refiner(tmp_path / "cut.pt")


def test_unsafe_pickle_is_refused(tmp_path):
    torch.save({"model": build_refiner(5, W)}, tmp_path / "pickled_module.pt")  # a whole module, not weights
    with pytest.raises(CheckpointError, match="pickled_module.pt"):
        load_refiner(tmp_path / "pickled_module.pt")


def test_sam_checkpoint_is_rejected_with_what_was_found(tmp_path):
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 4, 4, 8),
                "mask_decoder.iou_token.weight": torch.zeros(1, 8)}, tmp_path / "sam_vit_b.pth")
    with pytest.raises(CheckpointError) as err:
        load_refiner(tmp_path / "sam_vit_b.pth")
    msg = str(err.value)
    assert "sam_vit_b.pth" in msg and "conv_in.weight" in msg and "image_encoder.pos_embed" in msg


def test_wrong_width_or_channels_is_rejected(tmp_path):
    path = save_refiner(build_refiner(5, 0.25), tmp_path / "w025.pt")
    with pytest.raises(CheckpointError, match="width 0.125.*found width 0.25"):
        load_refiner(path, width=W)
    with pytest.raises(CheckpointError, match="3 input channels, found 5"):
        load_refiner(path, in_ch=3)
    # config says one width, tensors are another: the first mismatched key and both shapes are named
    ckpt = load_checkpoint(path)
    ckpt["model"] = build_refiner(5, W).state_dict()
    ckpt["model"]["conv_in.weight"] = torch.zeros(16, 5, 3, 3)
    torch.save(ckpt, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"mixed.pt.*'conv_in.bias': expected shape \(16,\), found \(8,\)"):
        load_refiner(tmp_path / "mixed.pt")
    state = build_refiner(5, W).state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'"):
        load_refiner(tmp_path / "extra.pth")
