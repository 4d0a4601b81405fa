"""RunParams: one object for what a run asks for beyond its profile (the CLI's options, a notebook's RUN)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dissam.repro.config import RunParams, profile_from_params


def test_a_notebooks_run_dict_and_the_cli_give_the_same_profile(tmp_path):
    run = {"profile": "paper", "data_dir": str(tmp_path / "DIS5K"), "sam_checkpoint": str(tmp_path / "sam.pth"),
           "sam_model_type": "vit_l", "isnet_checkpoint": str(tmp_path / "isnet.pth")}
    from_dict = profile_from_params(run)
    from_object = profile_from_params(RunParams(**run))
    assert from_dict.to_dict() == from_object.to_dict()
    assert from_dict.data_root == tmp_path / "DIS5K" and from_dict.coarse.kind == "sam"
    assert from_dict.coarse.checkpoint == tmp_path / "sam.pth" and from_dict.variant.sam_model_type == "vit_l"
    assert from_dict.baselines.isnet_checkpoint == tmp_path / "isnet.pth"
    assert RunParams.of(RunParams(**run).as_dict()) == RunParams(**run)  # what papermill passes round-trips


def test_defaults_are_the_profiles_own_and_a_dry_run_is_its_own_folder():
    assert profile_from_params({"profile": "smoke"}).to_dict() == profile_from_params("smoke").to_dict()
    assert RunParams("smoke").as_dict() == {"profile": "smoke"}
    dry = profile_from_params(RunParams("paper", dry_run=True))
    assert dry.tag == "dryrun" and dry.device == "cpu" and dry.train.max_iters == 2


def test_an_unknown_parameter_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown run parameter\(s\) \['data'\].*data_dir"):
        RunParams.of({"profile": "tiny", "data": Path("x")})
