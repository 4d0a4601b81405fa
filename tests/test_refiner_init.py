"""Variant.refiner_init: the refiner starts from scratch or from the published 3-channel IS-Net."""
from __future__ import annotations

import pytest
import torch

from dissam.repro.config import dry_run, get_profile
from dissam.variant import Variant
from dissam.model import build_refiner
from dissam.model.init import MissingIsnetCheckpoint, initial_refiner
from tests.helpers import saved_official_isnet

WIDTH = 0.125


@pytest.fixture
def official_isnet(tmp_path):
    return saved_official_isnet(tmp_path / "isnet.pth", WIDTH, seed=3)


@pytest.mark.parametrize("in_ch", [5, 4])
def test_isnet_init_returns_what_the_published_isnet_returns(official_isnet, in_ch):
    net, path = official_isnet
    model = initial_refiner("isnet", in_ch, WIDTH, isnet_checkpoint=path)
    assert model.training
    rgb = torch.rand(2, 3, 64, 64)
    extra = torch.rand(2, in_ch - 3, 64, 64)  # whatever the mask and box channels hold
    with torch.no_grad():
        want, _ = net(rgb)
        got, _ = model.eval()(torch.cat([rgb, extra], 1))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # zero filters add zeros (exact on x86 here)
    stem = model.conv_in.weight
    assert torch.equal(stem[:, :3], net.conv_in.weight) and not stem[:, 3:].any()


def test_scratch_init_is_build_refiner_bit_for_bit():
    profile = get_profile("tiny")
    assert profile.variant.refiner_init == "scratch" and get_profile("smoke").variant.refiner_init == "scratch"
    torch.manual_seed(0)
    ours = initial_refiner(profile.variant.refiner_init, 5, profile.train.width, coarse_prior=2.0).state_dict()
    torch.manual_seed(0)
    plain = build_refiner(in_ch=5, width=profile.train.width, coarse_prior=2.0).state_dict()
    assert all(torch.equal(ours[k], plain[k]) for k in plain)


def test_isnet_init_without_weights_says_where_to_get_them(tmp_path):
    with pytest.raises(MissingIsnetCheckpoint, match=r"isnet\.pth.*--isnet-checkpoint"):
        initial_refiner("isnet", 5, WIDTH)
    with pytest.raises(MissingIsnetCheckpoint, match="not found at"):
        initial_refiner("isnet", 5, WIDTH, isnet_checkpoint=tmp_path / "absent.pth")


def test_paper_profile_fine_tunes_isnet_at_the_papers_rate():
    paper = get_profile("paper")
    assert paper.variant.refiner_init == "isnet" and paper.refiner_lr == 1e-5 == Variant.paper().lr
    assert Variant.authors_code().refiner_init == "scratch"
    assert dry_run(paper).variant.refiner_init == "scratch"  # a dry run needs no download


def test_the_check_starts_the_paper_refiner_from_a_random_isnet(tmp_path):
    """The paper profile fine-tunes isnet.pth: its acceptance check writes a random one (as it writes a
    random SAM) so that the isnet path runs on the device, and the file loads as the published format."""
    from dissam.repro.check import CPU_BUDGET, build_check_profile
    from dissam.model.init import write_random_isnet

    profile = build_check_profile("paper", CPU_BUDGET, tmp_path, "cpu")
    assert profile.variant.refiner_init == "isnet" and profile.baselines.isnet_checkpoint == tmp_path / "isnet_random.pth"
    state = torch.get_rng_state()
    write_random_isnet(profile.baselines.isnet_checkpoint, WIDTH)
    assert torch.equal(state, torch.get_rng_state())
    model = initial_refiner(profile.variant.refiner_init, 5, WIDTH, isnet_checkpoint=profile.baselines.isnet_checkpoint)
    assert not model.conv_in.weight[:, 3:].any() and model.conv_in.weight[:, :3].any()
