"""What notebooks 04-06 show besides the paper's tables and figures: a condensed view of a printed table,
Table III's orders as a data frame, the runs Table II reads, what a notebook needs before it starts
(pipeline.ensure_inputs), and Fig. 1's example read closely (where the refined map is grey, what the
refiner changed in stage 1's mask)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dissam.repro import config, figures, pipeline, runs, tables
from dissam.repro.config import BaselineConfig, get_profile

# ----------------------------------------------------------------------------- tables


def _per_seed(means: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": s, "maxF": v} for m, values in means.items()
                         for s, v in enumerate(values)])


def test_order_checks_call_an_order_only_beyond_the_seed_spread():
    labels = [label for pair in tables.ABLATION_ORDER for label in pair]
    means = {label: [0.5, 0.5] for label in labels}
    means["box only"] = [0.60, 0.62]  # +0.11 over no prompt, sd 0.014: holds
    means["mask only"] = [0.40, 0.60]  # 0.0 over no prompt, sd 0.14: within
    means["box + mask"] = [0.30, 0.32]  # -0.30 / -0.19: reversed beyond both spreads
    means["box + mask + enrichment"] = [0.33, 0.35]  # +0.03 over box + mask, sd 0.014: holds
    checks = tables.order_checks(_per_seed(means))
    assert list(checks.columns) == ["higher", "lower", "gap", "sd", "verdict"]
    assert list(checks["verdict"]) == ["holds", tables.WITHIN_SPREAD, "reversed", "reversed", "holds"]
    assert checks.loc[0, "gap"] == pytest.approx(0.11)
    assert checks.loc[1, "sd"] == pytest.approx(np.std([0.4, 0.6], ddof=1))


def test_order_claims_are_the_checks_as_the_caption_words_them():
    labels = [label for pair in tables.ABLATION_ORDER for label in pair]
    means = {label: [0.5, 0.52] for label in labels}
    means["box only"] = [0.7, 0.7]
    claims = tables.order_claims(_per_seed(means))
    assert claims[0] == "box only > no box, no mask (IS-Net): holds (+0.190, sd 0.014)"
    assert claims[4] == ("box + mask + enrichment > box + mask: within the seed spread (+0.000 vs sd 0.014): "
                         "no order claimed")


def test_ablation_labels_name_row_one_as_the_table_does():
    profile = get_profile("tiny")
    [(paper_label, ours)] = tables.ablation_labels(profile).items()
    assert paper_label == runs.ABLATIONS[0].label
    assert ours == runs.ablation_row(profile, runs.ABLATIONS[0])[0] and "RGB only" in ours


def test_condensed_keeps_three_measures_per_data_set_rounded_as_printed():
    long = pd.DataFrame([
        {"method": "A", "dataset": "COIFT", "maxF": 0.81234, "wF": 0.7, "MAE": 0.04567, "S": 0.8, "meanE": 0.9,
         "HCE": 35.6},
        {"method": "A", "dataset": "HRSOD", "maxF": 0.9, "wF": 0.8, "MAE": 0.01, "S": 0.9, "meanE": 0.95, "HCE": 2.4},
    ])
    wide, _ = tables.render_table(long, "II", source_label="test")
    short = tables.condensed(wide)
    assert wide.shape[1] > 12 and short.shape[1] == 4 * 3  # COIFT, HRSOD, ThinObject5K-TE, ALL (paper rows)
    assert list(short.columns.get_level_values("data set")[::3]) == ["COIFT", "HRSOD", "ThinObject5K-TE", "ALL"]
    assert list(short.columns.get_level_values("metric")[:3]) == ["maxF↑", "MAE↓", "HCE↓"]
    row = short.loc["A (test)"]
    assert row["COIFT", "maxF↑"] == 0.812 and row["COIFT", "MAE↓"] == 0.046 and row["COIFT", "HCE↓"] == 36
    assert str(short["HRSOD", "HCE↓"].dtype) == "Int64" and pd.isna(row["ALL", "HCE↓"])
    assert short.loc["DIS-SAM (paper)", ("HRSOD", "maxF↑")] == 0.971  # the paper's rows come first, as printed


def test_table_two_reads_isnet_stand_in_unless_the_published_one_is_given(tmp_path):
    profile = get_profile("tiny")
    assert runs.table_two_runs(profile) == [runs.ISNET_RUN, runs.MAIN]
    profile.baselines = BaselineConfig(isnet_checkpoint=tmp_path / "isnet.pth")
    assert runs.table_two_runs(profile) == [runs.MAIN]


def test_ensure_inputs_makes_data_stage1_and_gt_encoder_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path))
    profile = get_profile("tiny")
    first = pipeline.ensure_inputs(profile, progress=False)
    assert first == profile.gt_encoder_checkpoint and first.is_file()
    assert (profile.data_root / "DIS-TR" / "im").is_dir()
    for split in ("DIS-TR", "DIS-VD"):
        assert any(p.is_file() for p in config.coarse_cache_dir(profile, split).rglob("*")), split
    stamp = first.stat().st_mtime_ns
    assert pipeline.ensure_inputs(profile, progress=False) == first and first.stat().st_mtime_ns == stamp
    assert not profile.refiner_checkpoint.exists()  # the main run is ensure_refiner's job


# ----------------------------------------------------------------------------- Fig. 1 read closely
def _example():
    gt = np.zeros((40, 40), np.uint8)
    gt[5:30, 5:30] = 255  # a solid square
    gt[30:38, 17:19] = 255  # a leg two pixels wide
    coarse = np.zeros_like(gt)
    coarse[4:30, 4:30] = 255  # one pixel too wide on two sides, and the leg missed
    mask = gt.copy()
    mask[10, 10] = 0  # one object pixel lost
    return coarse, mask, gt


def test_refinement_changes_split_every_changed_pixel_once():
    coarse, mask, gt = _example()
    changes = figures.refinement_changes(coarse, mask, gt)
    assert list(changes) == list(figures.CHANGE_COLOURS)
    total = sum(m.astype(int) for m in changes.values())
    assert total.max() == 1 and np.array_equal(total.astype(bool), (coarse > 127) != (mask > 127))
    assert changes["added, right"].sum() == 16  # the leg
    assert changes["removed, right"].sum() == 26 + 25  # the extra row and column of stage 1
    assert changes["removed, wrong"].sum() == 1 and changes["added, wrong"].sum() == 0
    table = figures.change_table(coarse, mask, gt)
    assert list(table["pixels"]) == [16, 0, 51, 1]
    assert table["% of the object"].iloc[0] == round(100 * 16 / (25 * 25 + 16), 1)


def test_structure_regions_find_the_thin_leg_and_cover_the_image():
    _, _, gt = _example()
    regions = figures.structure_regions(gt)
    assert sum(r.astype(int) for r in regions.values()).min() == 1  # a partition
    assert sum(r.astype(int) for r in regions.values()).max() == 1
    assert regions["thin parts"][32:37, 17:19].all() and not regions["thin parts"][10:25, 10:25].any()
    assert regions["outline"][5, 15] and regions["elsewhere"][15, 15] and regions["elsewhere"][0, 39]


def test_soft_map_table_counts_grey_pixels_per_region():
    _, _, gt = _example()
    thin = figures.structure_regions(gt)["thin parts"]
    prob = np.where(gt > 127, 255, 0).astype(np.uint8)
    prob[thin] = 128  # unsure on the thin parts only (the leg, and the tips of the square's corners)
    prob[0, 0] = 26  # 0.102: grey, in the background
    table = figures.soft_map_table(prob, gt).set_index("region")
    assert table.loc["thin parts", "% grey"] == 100.0
    assert table.loc["outline", "% grey"] == 0.0
    assert table.loc["elsewhere", "% grey"] == round(100 / table.loc["elsewhere", "pixels"], 1)
    assert table["pixels"].sum() == gt.size


def test_changes_figure_has_its_five_panels_and_a_legend():
    coarse, mask, gt = _example()
    image = np.dstack([gt] * 3)
    fig = figures.changes_figure(image, coarse, mask, mask, gt)
    assert len(fig.axes) == 5
    assert [t.get_text() for t in fig.axes[3].get_legend().get_texts()] == list(figures.CHANGE_COLOURS)
