"""The acceptance check: its CPU mode end to end, and a failed step recorded while the later ones still run."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from dissam.repro import check
from dissam.repro.check import CPU_BUDGET, FAIL, PASS, SKIPPED, CheckBudget, build_check_profile


def test_profile_runs_the_paper_code_path_in_its_own_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path / "runs"))
    profile = build_check_profile("paper", CPU_BUDGET, tmp_path, "cpu")
    assert profile.name == "paper" and profile.tag == "check"
    assert profile.coarse.kind == "sam" and profile.variant.sam_model_type == "tiny"
    assert profile.coarse.checkpoint.parent == tmp_path and profile.data.root == tmp_path / "data"
    assert profile.train.width == 1.0 and profile.train.max_iters == CPU_BUDGET.iters
    assert profile.run_dir == tmp_path / "runs" / "paper-check"
    gpu = build_check_profile("paper", check.GPU_BUDGET, tmp_path, "cuda")
    assert (gpu.train.size, gpu.train.batch_size, gpu.train.width) == (1024, 6, 1.0)
    assert gpu.variant.sam_model_type == "vit_b" and gpu.data.size == 1024


def _ok(run):
    return {"value": 1}


def _boom(run):
    raise RuntimeError("injected failure")


def _skip(run):
    raise check.SkipStep("not here")


def test_a_failed_step_is_recorded_and_the_later_steps_still_run(tmp_path, monkeypatch):
    calls = []
    steps = [("first", _ok), ("broken", _boom), ("after", lambda run: calls.append("after") or {"ran": True}),
             ("skipped", _skip)]
    monkeypatch.setattr(check, "STEPS", tuple(steps))
    report = check.run_check("paper", device="cpu", out=tmp_path / "out", budget=CPU_BUDGET)
    steps_out = report["steps"]
    assert steps_out["first"]["status"] == PASS and steps_out["first"]["value"] == 1
    assert steps_out["broken"]["status"] == FAIL
    assert "RuntimeError: injected failure" in steps_out["broken"]["error"]
    assert "injected failure" in steps_out["broken"]["traceback"]
    assert calls == ["after"] and steps_out["after"]["status"] == PASS
    assert (steps_out["skipped"]["status"], steps_out["skipped"]["reason"]) == (SKIPPED, "not here")
    assert report["failed"] == ["broken"] and report["passed"] is False
    assert json.loads((tmp_path / "out" / check.REPORT_NAME).read_text())["failed"] == ["broken"]


def test_main_exits_1_when_a_step_failed_and_0_otherwise(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check, "STEPS", (("broken", _boom),))
    assert check.main(["--device", "cpu", "--out", str(tmp_path / "a")]) == 1
    monkeypatch.setattr(check, "STEPS", (("fine", _ok), ("skipped", _skip)))
    assert check.main(["--device", "cpu", "--out", str(tmp_path / "b")]) == 0
    assert '"passed": true' in capsys.readouterr().out


def test_a_real_step_failure_leaves_the_next_steps_running(tmp_path, monkeypatch):
    """Stage 1 fails (its checkpoint is missing); the GT encoder, which needs no stage-1 masks, still trains."""
    steps = dict(check.STEPS)
    monkeypatch.setattr(check, "STEPS", (("data", steps["data"]), ("stage1_cache", steps["stage1_cache"]),
                                         ("gt_encoder", steps["gt_encoder"])))
    budget = CheckBudget(size=64, n_train=4, n_val=2, iters=2, gt_encoder_iters=1, sam_model_type="tiny",
                         batch_size=2, width=0.125)
    report = check.run_check("paper", device="cpu", out=tmp_path, budget=budget)
    assert report["steps"]["stage1_cache"]["status"] == FAIL
    assert "checkpoint" in report["steps"]["stage1_cache"]["error"]
    assert report["steps"]["data"]["status"] == PASS and report["steps"]["gt_encoder"]["status"] == PASS
    assert report["failed"] == ["stage1_cache"]


@pytest.mark.slow
def test_cpu_mode_end_to_end(tmp_path):
    """Every step of the CPU mode passes (DDP: gloo, or skipped), the measurements are positive numbers,
    the interruption resumes to the full count, and the report is written."""
    runs_before = os.environ.get("DISSAM_RUNS")
    report = check.run_check("paper", device="cpu", out=tmp_path)
    for name, step in report["steps"].items():
        assert step["status"] == PASS or (name == "ddp" and step["status"] == SKIPPED), (name, step)
    assert set(report["steps"]) == {name for name, _ in check.STEPS}
    metrics = report["metrics"]
    for key in ("iterations_per_second", "main_run_hours", "main_run_iterations", "seconds_per_eval_image",
                "total_seconds", "peak_host_memory_gb"):
        assert isinstance(metrics[key], (int, float)) and metrics[key] > 0, key
    assert metrics["main_run_iterations"] == 100_000 and metrics["peak_gpu_memory_gb"] is None
    assert "projected_hours" not in metrics  # the whole profile's projection is --project's
    resumed = report["steps"]["train_resumed"]
    assert (resumed["resumed_from"], resumed["iterations"]) == (CPU_BUDGET.iters // 2, CPU_BUDGET.iters)
    assert [v["iteration"] for v in report["steps"]["validation"]["validations"]] == [2, 4]
    assert report["config"]["width"] == 1.0 and report["passed"] is True
    assert json.loads((tmp_path / check.REPORT_NAME).read_text()) == report
    assert (tmp_path / "runs" / "paper-check" / "checkpoints" / "dissam_refiner.pt").is_file()
    assert os.environ.get("DISSAM_RUNS") == runs_before  # restored


def test_ddp_plan_picks_ranks_backend_and_gpus():
    """A GPU per rank: NCCL. One GPU: two ranks share it under gloo (NCCL refuses two ranks on one device),
    only when the budget allows sharing. CPU: gloo when asked for."""
    gpu = check.GPU_BUDGET
    assert check.ddp_plan("cuda", 2, gpu) == check.DdpPlan(2, "nccl", False)
    assert check.ddp_plan("cuda", 8, gpu) == check.DdpPlan(2, "nccl", False)
    assert check.ddp_plan("cuda", 1, gpu) == check.DdpPlan(2, "gloo", True)
    assert check.ddp_plan("cuda", 1, replace(gpu, share_gpus=False)) is None
    assert check.ddp_plan("cuda", 1, replace(gpu, ddp_backend="nccl")) is None
    assert check.ddp_plan("cuda", 0, gpu) is None
    assert check.ddp_plan("cpu", 0, CPU_BUDGET) == check.DdpPlan(2, "gloo", False)
    assert check.ddp_plan("cpu", 0, replace(CPU_BUDGET, ddp_on_cpu=False)) is None
    assert check.ddp_plan("cpu", 0, replace(CPU_BUDGET, ddp_processes=1)) is None


def test_ddp_step_is_skipped_without_a_plan(tmp_path, monkeypatch):
    import torch

    budget = replace(check.GPU_BUDGET, share_gpus=False)
    run = check.CheckRun("paper", build_check_profile("paper", budget, tmp_path, "cuda"), budget, tmp_path, "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check.run_step(run, "ddp", check.step_ddp)["status"] == SKIPPED


def test_worker_errors_are_picked_out_of_torchrun_output():
    output = ("[rank0]: Traceback (most recent call last):\n[rank0]:   File \"x.py\", line 1\n"
              "[rank0]: ValueError: bad batch\n[rank1]: torch.OutOfMemoryError: CUDA out of memory\n"
              "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n")
    assert check._worker_error(output) == ("[rank0]: ValueError: bad batch | "
                                           "[rank1]: torch.OutOfMemoryError: CUDA out of memory")
    assert check._worker_error("no rank lines") == "no rank lines"
