"""The paper profile's projection: the stage arithmetic by hand, the plan read from the code's budgets,
the report's keys, and ``dissam check --project`` end to end on tiny images."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from dissam.repro import check, projection
from dissam.repro.config import AblationConfig, get_profile
from dissam.repro.projection import Assumptions, Node, Stage, Work, loader_workers, price, totals

RATE_KEYS = ("stage1_embed_cpu_s", "stage1_mask_cpu_s", "stage1_lookup_core_s", "stage1_write_core_s",
             "resized_cache_mask_image_core_s", "resized_cache_mask_sample_core_s", "resized_cache_plain_image_core_s",
             "resized_cache_plain_sample_core_s", "loader_sample_core_s", "prediction_read_cpu_s",
             "prediction_write_cpu_s", "eval_read_core_s", "stage1_prediction_cpu_s", "gt_summary_cpu_s",
             "eval_fresh_core_s", "eval_cached_core_s")


def rates(value: float = 0.0, **overrides: float) -> dict[str, float]:
    return {**dict.fromkeys(RATE_KEYS, value), "gt_encoder_step_ratio": 0.5, "forward_ratio": 0.25, **overrides}


def test_serial_work_does_not_scale_and_parallel_work_scales_up_to_its_threads():
    stage = Stage("nb", "s", serial_s=10.0, parallel_core_s=160.0)
    assert stage.wall(16) == pytest.approx(10 + 10)
    assert stage.wall(32) == pytest.approx(10 + 5)  # only the parallel part gains from cores (Amdahl)
    assert replace(stage, threads=8).wall(32) == pytest.approx(10 + 20)  # the code's 8 threads, not 32
    assert Stage("nb", "s", serial_s=10.0).wall(1) == Stage("nb", "s", serial_s=10.0).wall(64) == 10


def test_overlapped_stages_take_the_longer_of_gpu_and_cpu():
    gpu_bound = Stage("nb", "s", gpu_s=100.0, serial_s=5.0, parallel_core_s=800.0, threads=10, overlapped=True)
    assert gpu_bound.wall(16) == pytest.approx(105)  # max(100 + 5, 800 / 10)
    cpu_bound = replace(gpu_bound, parallel_core_s=1600.0)
    assert cpu_bound.wall(16) == pytest.approx(160)
    assert cpu_bound.row(16)["bound"] == "cpu threads" and gpu_bound.row(16)["bound"] == "gpu"
    assert replace(gpu_bound, overlapped=False).wall(16) == pytest.approx(100 + 5 + 80)


def test_busy_share_is_gpu_seconds_over_wall_seconds():
    stages = [Stage("a", "gpu", gpu_s=100.0), Stage("b", "cpu", parallel_core_s=100.0)]
    result = totals(stages, cores=4)
    assert result["hours"] == pytest.approx(125 / 3600)
    assert result["gpu_hours"] == pytest.approx(100 / 3600)
    assert result["gpu_busy_share"] == pytest.approx(0.8)
    rows = projection.by_notebook(stages, 4)
    assert [r["notebook"] for r in rows] == ["a", "b"] and rows[0]["gpu_busy_share"] == 1.0


def test_training_is_max_of_gpu_step_and_loader_per_batch():
    work = Work("nb", "train", "train x", iterations=10, batch=6)
    a = Assumptions(gpu_step_s=0.15)
    slow_loader = price(work, rates(loader_sample_core_s=0.1), a, workers=2, stage1_threads=6)
    assert slow_loader.wall(16) == pytest.approx(10 * 6 * 0.1 / 2)  # 0.3 s a batch from 2 workers > 0.15 s
    fast_loader = price(work, rates(loader_sample_core_s=0.01), a, workers=8, stage1_threads=6)
    assert fast_loader.wall(16) == pytest.approx(10 * 0.15)
    encoder = price(replace(work, gt_encoder=True), rates(), a, workers=8, stage1_threads=6)
    assert encoder.gpu_s == pytest.approx(10 * 0.15 * 0.5)  # the GT encoder's step by its FLOP ratio
    validate = price(Work("nb", "validate", "v", images=12, batch=6), rates(), a, 8, 6)
    assert validate.gpu_s == pytest.approx(12 * 0.15 * 0.25 / 6)  # a forward per image


def test_loader_workers_are_the_profiles_at_most_cores_minus_two():
    assert loader_workers(8, 16) == 8
    assert loader_workers(8, 4) == 2
    assert loader_workers(0, 16) == 1
    assert loader_workers(8, 16, assumed=14) == 14


def test_plan_reads_the_budgets_of_the_paper_profile():
    profile = get_profile("paper")
    plan = projection.paper_plan(profile)
    trained = {w.label.split()[1]: w for w in plan if w.kind == "train"}
    assert trained["main"].iterations == profile.train.max_iters == 100_000
    assert trained["gt_encoder"].iterations == profile.train.gt_encoder_iters and trained["gt_encoder"].gt_encoder
    ablations = {"ablation_none", "ablation_box", "ablation_mask", "ablation_box_mask", "ablation_box_mask_enrich"}
    assert set(trained) == {"main", "gt_encoder", *ablations}
    assert all(trained[a].iterations == profile.ablation.max_iters for a in ablations)
    validations = {w.label.split()[1]: w.images for w in plan if w.kind == "validate"}
    assert validations["main"] == math.ceil(100_000 / profile.train.val_every) * projection.SPLIT_IMAGES["DIS-VD"]
    sets = [w.label for w in plan if w.kind == "resized_set"]
    assert len(sets) == len(set(sets))  # each resized set is built once, by the first step that reads it
    evaluated = [w for w in plan if w.kind == "evaluate"]
    fresh = [w.split for w in evaluated if w.fresh]
    assert sorted(fresh) == sorted(set(w.split for w in evaluated))  # skeletons once per split
    assert [w.notebook for w in plan if w.kind == "gt_summary"] == ["00_data_enrichment"]
    assert projection.unused_runs(profile) == ["ablation_none"]  # isnet.pth given: its stand-in is unread


def test_plan_follows_the_profiles_ablation_settings():
    profile = get_profile("paper")
    profile.ablation = AblationConfig(max_iters=20_000, main_budget=True, seeds=(0, 1))
    trained = [w.label.split()[1] for w in projection.paper_plan(profile) if w.kind == "train"]
    assert "ablation_box_mask_enrich" not in trained  # on the main budget it is the main run
    assert "ablation_box_seed1" in trained and trained.count("main") == 1


def test_projection_report_keys_and_consistency():
    report = projection.project(rates(0.0), Assumptions(gpu_step_s=0.2), Node(cores=16))
    assert 0.0 <= report["gpu_busy_share"] <= 1.0
    assert report["gpu_busy_share"] == pytest.approx(1.0)  # no CPU cost at all: the GPU is always busy
    assert report["projected_hours"] == pytest.approx(report["gpu_hours"])
    assert report["projected_hours"] == pytest.approx(sum(s["hours"] for s in report["stages"]))
    assert report["projected_hours"] == pytest.approx(sum(n["hours"] for n in report["notebooks"]))
    assert report["assumptions"]["gpu_step_s"]["value"] == 0.2
    assert set(report["by_gpu_step_s"]) == {"0.10", "0.15", "0.20"}
    assert [n["notebook"] for n in report["notebooks"]] == list(projection.NOTEBOOKS)
    json.dumps(report)
    text = projection.table(report)
    assert "02_training" in text and "paper profile" in text


def test_check_project_writes_the_projection_json(tmp_path, monkeypatch, capsys):
    """``dissam check --project`` end to end: the rates measured on tiny images, the projection printed and
    written beside the check's report (the check's own steps are left out here; test_check runs them)."""
    monkeypatch.setattr(check, "STEPS", ())
    code = check.main(["--device", "cpu", "--out", str(tmp_path), "--project", "--cores", "8",
                       "--rate-image-wh", "96", "80", "--rate-size", "64", "--rate-images", "2"])
    assert code == 0
    report = json.loads((tmp_path / check.PROJECTION_NAME).read_text())
    assert report["projected_hours"] > 0 and 0.0 < report["gpu_busy_share"] <= 1.0
    assert report["node"]["cores"] == 8 and report["assumptions"]["gpu_step_s"]["value"] == check.DEFAULT_GPU_STEP_S
    assert report["rates"]["spec"]["image_wh"] == [96, 80] and report["rates"]["threads"]["torch"] == 1
    for key in RATE_KEYS:
        assert report["rates"][key] >= 0.0, key
    assert report["rates"]["loader_sample_core_s"] > 0 and report["rates"]["eval_fresh_core_s"] > 0
    assert report["cpu"]["model"] and report["measured_on"]["gpu_step_measured"] is False
    metrics = json.loads((tmp_path / check.REPORT_NAME).read_text())["metrics"]
    assert metrics["projected_hours"] == report["projected_hours"]
    assert "paper profile" in capsys.readouterr().out


def test_a_gpu_check_at_the_paper_size_gives_the_step_time():
    report = {"device": "cuda", "device_name": "H200", "profile": "paper", "budget": {"image_wh": [3000, 2500]},
              "config": {"size": 1024, "batch_size": 6, "width": 1.0, "autocast": "none"},
              "metrics": {"steady_iterations_per_second": 8.0, "iterations_per_second": 7.0}}
    assert check.measured_step_s(report) == pytest.approx(0.125)
    assert check.measured_step_s({**report, "config": {**report["config"], "autocast": "bf16"}}) is None
    assert check.measured_step_s({**report, "budget": {"image_wh": None}}) is None
    assert check.measured_step_s({**report, "device": "cpu", "device_name": "cpu"}) is None
