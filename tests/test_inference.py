"""The optimised inference path gives eager's values (1e-4) and leaves the original model alone."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from dissam.model import build_gt_encoder, build_refiner
from dissam.model.inference import FusedConv2d, fold_bn, optimize_for_inference, predict_prob
from helpers import randomised_batchnorm

W = 0.125


def test_fold_bn_equals_conv_then_bn():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=2, dilation=2), randomised_batchnorm(nn.BatchNorm2d(4))
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        assert torch.allclose(fold_bn(conv, bn)(x), bn(conv(x)), atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_optimized_refiner_matches_eager_and_leaves_original(channels_last):
    torch.manual_seed(0)
    model = randomised_batchnorm(build_refiner(5, W)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, channels_last=channels_last)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not fast.training and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    fused = [m for m in fast.modules() if isinstance(m, FusedConv2d)]
    if channels_last and torch.backends.mkldnn.is_available():  # every conv prepacked, ReLUs fused
        assert not convs and len(fused) == 119 and sum(f.act == "relu" for f in fused) == 112
    else:
        assert not fused and len(convs) == 119 and not any(
            c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs if c.weight.shape[-1] > 1)
    x = torch.randn(2, 5, 64, 64)
    model.eval()
    with torch.no_grad():
        ref_maps, ref_feats = model(x)
        maps, feats = fast(x)
        prob = predict_prob(fast, x)
    for a, b in zip((*maps, *feats), (*ref_maps, *ref_feats)):
        assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-4
    assert prob.shape == (2, 1, 64, 64) and (prob - ref_maps[0]).abs().max().item() <= 1e-4


def test_fused_prepacked_path_matches_unfused_and_copies():
    torch.manual_seed(0)
    model = randomised_batchnorm(build_refiner(5, W))
    fast, plain = optimize_for_inference(model), optimize_for_inference(model, fuse=False)
    assert not any(isinstance(m, FusedConv2d) for m in plain.modules())
    x = torch.randn(1, 5, 72, 72)  # another size than the other tests: packing is size-independent
    with torch.no_grad():
        ref = model(x)[0][0]
    for m in (fast, plain, copy.deepcopy(fast)):
        assert (predict_prob(m, x) - ref).abs().max().item() <= 1e-4


def test_predict_prob_is_maps0_without_grad_and_restores_mode():
    torch.manual_seed(0)
    model = randomised_batchnorm(build_refiner(5, W)).train()
    x = torch.randn(1, 5, 48, 48)
    prob = predict_prob(model, x)  # a training-mode model is run in eval mode, then put back
    assert model.training and not prob.requires_grad and prob.shape == (1, 1, 48, 48)
    model.eval()
    with torch.no_grad():
        assert torch.equal(prob, model(x)[0][0])
    with pytest.raises(ValueError, match="B, C, S, S"):
        predict_prob(model, x[0])


def test_predict_prob_on_model_without_predict_method():
    class Plain(nn.Module):
        def forward(self, x):
            return [torch.sigmoid(x[:, :1]), x], [x]
    x = torch.randn(1, 2, 4, 4)
    assert torch.equal(predict_prob(Plain(), x), torch.sigmoid(x[:, :1]))


def test_optimized_gt_encoder_matches_eager():
    torch.manual_seed(0)
    enc = randomised_batchnorm(build_gt_encoder(W))
    gt = (torch.rand(1, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        ref_maps, ref_feats = enc(gt)
        maps, feats = optimize_for_inference(enc)(gt)
    assert max((a - b).abs().max().item() for a, b in zip((*maps, *feats), (*ref_maps, *ref_feats))) <= 1e-4


def test_retain_freed_memory_stops_page_faults_on_reuse():
    """Run in a child process: the allocator setting is process-wide."""
    code = (
        "import resource, torch\n"
        "from dissam.model.inference import retain_freed_memory\n"
        "def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "def touch():\n"
        "    t = torch.empty(2 ** 24); t.fill_(1.0); del t\n"
        "touch(); a = faults(); touch(); before = faults() - a\n"
        "ok = retain_freed_memory()\n"
        "for _ in range(30): touch()  # the heap settles after a few rounds (alignment slack; up to 7 seen)\n"
        "a = faults(); touch(); after = faults() - a\n"
        "print(ok, before, after)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[0] == "False":
        pytest.skip("not glibc")
    before, after = int(out[1]), int(out[2])
    assert before > 1000 and after < before / 10, (before, after)  # 64 MB: ~16,000 faults, then ~none


def test_bfloat16_opt_in_is_close_and_returns_fp32():
    torch.manual_seed(0)
    model = randomised_batchnorm(build_refiner(5, W))
    x = torch.randn(1, 5, 64, 64)
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
    prob = predict_prob(fast, x)
    with torch.no_grad():
        ref = model(x)[0][0]
    assert prob.dtype == torch.float32 and (prob - ref).abs().max().item() < 5e-2
    with pytest.raises(ValueError):
        optimize_for_inference(model, dtype=torch.float16)
    with pytest.raises(ValueError):
        optimize_for_inference(model, channels_last=False, dtype=torch.bfloat16)
