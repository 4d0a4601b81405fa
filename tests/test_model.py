"""IS-Net refiner and GT encoder: official layout at width 1.0, shapes and scaling at small widths."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dissam.model import build_gt_encoder, build_refiner
from dissam.model.rsu import RSU, RSU4F, REBNCONV, build_rsu, scale_channels

REFERENCE = json.loads((Path(__file__).parent / "reference" / "isnet_official_state_dict.json").read_text())


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, build", [
    ("ISNetDIS_in5", lambda: build_refiner(in_ch=5)),
    ("ISNetDIS_in3", lambda: build_refiner(in_ch=3)),
    ("ISNetGTEncoder", lambda: build_gt_encoder()),
])
def test_full_width_matches_official_state_dict(name, build):
    with torch.device("meta"):  # 44M parameters, no memory or init cost
        model = build()
    ref = REFERENCE[name]
    shapes = _shapes(model)
    assert list(shapes) == list(ref["state_dict"])  # same keys, same order
    assert shapes == ref["state_dict"]
    assert len(shapes) == ref["n_tensors"]
    assert sum(p.numel() for p in model.parameters()) == ref["n_params"]


def test_reference_parameter_counts():
    assert [REFERENCE[n]["n_params"] for n in ("ISNetDIS_in5", "ISNetDIS_in3", "ISNetGTEncoder")] == \
        [44_047_942, 44_046_790, 6_877_734]


@pytest.mark.parametrize("width", [0.125, 0.25])
def test_forward_shapes_and_feature_pairing(width):
    torch.manual_seed(0)
    refiner, encoder = build_refiner(5, width), build_gt_encoder(width)
    assert refiner.config == {"in_ch": 5, "width": width} and encoder.config == {"width": width}
    x, gt = torch.randn(2, 5, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    maps, feats = refiner(x)
    gmaps, gfeats = encoder(gt)
    assert len(maps) == len(feats) == len(gmaps) == len(gfeats) == 6
    for m in (*maps, *gmaps):
        assert m.shape == (2, 1, 64, 64) and m.min() >= 0 and m.max() <= 1
    assert [f.shape for f in feats] == [g.shape for g in gfeats]
    expected_ch = [scale_channels(c, width) for c in (64, 64, 128, 256, 512, 512)]
    assert [f.shape[1] for f in feats] == expected_ch
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2, 1]  # stride-2 stem, then 2x pooling


def test_width_scales_parameters():
    n = {w: sum(p.numel() for p in build_refiner(5, w).parameters()) for w in (0.125, 0.25)}
    assert 3.5 < n[0.25] / n[0.125] < 4.5  # conv parameters grow with width^2
    assert build_refiner(5, 0.25).conv_in.weight.shape == (16, 5, 3, 3)
    assert scale_channels(16, 0.01) == 1


def test_odd_input_size_and_three_channels():
    model = build_refiner(3, 0.125).eval()  # eval: batch 1 reaches 1x1 maps, where training BN cannot run
    with torch.no_grad():
        maps, _ = model(torch.randn(1, 3, 50, 38))
    assert all(m.shape == (1, 1, 50, 38) for m in maps)


def test_predict_equals_first_map_and_gradients_flow():
    torch.manual_seed(0)
    model = build_refiner(5, 0.125)
    x = torch.randn(2, 5, 32, 32)
    maps, feats = model(x)
    (maps[0].mean() + feats[-1].mean()).backward()
    assert model.conv_in.weight.grad is not None and model.conv_in.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.predict(x), model(x)[0][0])


@pytest.mark.parametrize("block", [RSU(7, 4, 3, 5), RSU(4, 4, 3, 5), RSU4F(4, 3, 5)])
def test_rsu_is_residual(block):
    """With the last decoder conv zeroed (eval BN: identity at default stats), output == residual branch."""
    block.eval()
    torch.nn.init.zeros_(block.rebnconv1d.conv_s1.weight)
    torch.nn.init.zeros_(block.rebnconv1d.conv_s1.bias)
    x = torch.randn(1, 4, 19, 23)
    with torch.no_grad():
        assert torch.equal(block(x), block.rebnconvin(x))
        assert block(x).shape == (1, 5, 19, 23)


def test_rebnconv_dilation_keeps_size():
    conv = REBNCONV(2, 3, dilation=8)
    assert conv.conv_s1.padding == (8, 8) and conv(torch.randn(1, 2, 20, 20)).shape == (1, 3, 20, 20)


@pytest.mark.parametrize("bad", [0, -1.0])
def test_bad_width_rejected(bad):
    with pytest.raises(ValueError):
        build_refiner(5, bad)
    with pytest.raises(ValueError):
        build_gt_encoder(bad)


def test_rsu_registry():
    assert isinstance(build_rsu("RSU4F", 2, 2, 2), RSU4F) and build_rsu("RSU6", 2, 2, 2).depth == 6
    with pytest.raises(ValueError, match="unknown RSU block"):
        build_rsu("RSU3", 2, 2, 2)


def _zero_side_convs(model):
    with torch.no_grad():
        for i in range(1, 7):
            side = getattr(model, f"side{i}")
            side.weight.zero_()
            side.bias.zero_()
    return model


def test_coarse_prior_starts_every_side_map_at_the_coarse_mask():
    """k * (2 * mask - 1) is added to each side logit: with the side convs silent, every map is
    sigmoid(+-k) exactly where the coarse-mask channel says object / background (soft values too)."""
    torch.manual_seed(0)
    k = 6.0
    model = _zero_side_convs(build_refiner(5, 0.125, coarse_prior=k)).eval()
    x = torch.rand(2, 5, 40, 40) - 0.5
    mask = (torch.rand(2, 1, 40, 40) > 0.5).float()
    mask[0, 0, :5, :5] = 0.25  # a soft coarse value
    x[:, 3:4] = mask
    expected = torch.sigmoid(k * (2 * mask - 1))
    with torch.no_grad():
        maps, _ = model(x)
        for m in maps:
            torch.testing.assert_close(m, expected)
        torch.testing.assert_close(model.predict(x), expected)
    # Without the prior (the paper's network) the same silent network says 0.5 everywhere.
    plain = _zero_side_convs(build_refiner(5, 0.125)).eval()
    with torch.no_grad():
        assert torch.allclose(plain.predict(x), torch.full_like(expected, 0.5))


def test_coarse_prior_travels_with_the_checkpoint_and_the_fast_path(tmp_path):
    from dissam.model import load_refiner, optimize_for_inference, predict_prob, save_refiner

    torch.manual_seed(0)
    model = build_refiner(5, 0.125, coarse_prior=4.0).eval()
    path = save_refiner(model, tmp_path / "r.pt")
    loaded = load_refiner(path)
    assert loaded.config["coarse_prior"] == 4.0 and loaded.coarse_prior == 4.0
    x = torch.rand(1, 5, 48, 48)
    x[:, 3] = (x[:, 3] > 0.5).float()
    ref = predict_prob(model, x)
    torch.testing.assert_close(predict_prob(loaded, x), ref)
    torch.testing.assert_close(predict_prob(optimize_for_inference(loaded), x), ref, atol=1e-4, rtol=0)
    # The paper's refiner has no prior and its checkpoints say nothing of one.
    assert "coarse_prior" not in build_refiner(5, 0.125).config


@pytest.mark.parametrize("in_ch, k", [(3, 4.0), (5, -1.0)])
def test_coarse_prior_needs_a_mask_channel_and_a_nonnegative_scale(in_ch, k):
    with pytest.raises(ValueError, match="coarse_prior"):
        build_refiner(in_ch, 0.125, coarse_prior=k)
