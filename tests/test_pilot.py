"""``dissam check --pilot`` end to end on the CPU: a tiny DIS5K-layout folder at 64 px, a random isnet.pth."""
from __future__ import annotations

import json

import pytest
import torch

from dissam.repro import check
from dissam.repro.config import get_profile
from dissam.data.procedural import generate_dataset
from dissam.model import build_refiner
from dissam.repro.pilot import PILOT_ARMS, PILOT_JSON


def test_pilot_trains_the_three_arms_and_reports_their_maxf(tmp_path, capsys):
    generate_dataset(tmp_path / "DIS5K", get_profile("tiny").data, progress=False)
    torch.manual_seed(1)
    torch.save(build_refiner(in_ch=3, width=0.125).state_dict(), tmp_path / "isnet.pth")
    argv = ["--profile", "tiny", "--device", "cpu", "--out", str(tmp_path / "out"), "--pilot",
            "--pilot-iters", "2", "--pilot-data", str(tmp_path / "DIS5K"), "--pilot-isnet", str(tmp_path / "isnet.pth")]
    assert check.main(argv) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.rindex('{\n  "profile"'):])  # training progress may precede the report
    written = json.loads((tmp_path / "out" / PILOT_JSON).read_text())
    assert printed == written
    assert list(written["arms"]) == ["scratch@1e-05", "scratch@4e-05", "isnet@1e-05"] == [a.name for a in PILOT_ARMS]
    for arm in written["arms"].values():
        assert arm["iterations"] == 2 and 0.0 <= arm["val_maxF"] <= 1.0
    assert written["best_arm"] in written["arms"]
    isnet_ckpt = torch.load(written["arms"]["isnet@1e-05"]["checkpoint"], weights_only=True)
    assert isnet_ckpt["model"]["conv_in.weight"].shape[1] == 5


def test_pilot_without_isnet_fails_at_once(tmp_path):
    argv = ["--profile", "tiny", "--device", "cpu", "--out", str(tmp_path / "out"), "--pilot",
            "--pilot-iters", "2"]
    with pytest.raises(FileNotFoundError, match="isnet"):
        check.main(argv)
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").rglob("*.pt"))
