"""Paper-format tables: paper rows beside ours, arrows, DIS-TE(ALL), check marks, parseable Markdown."""
from __future__ import annotations


import pandas as pd
import pytest

from dissam.data.splits import TE_ALL, TEST_SPLITS, VAL_SPLIT, ZERO_SHOT_ALL, ZERO_SHOT_SETS
from dissam.metrics import METRICS
from dissam.repro.tables import Table, ablation_flags, paper_rows, render_table, write_table

def _long(methods, datasets, base=0.5) -> pd.DataFrame:
    rows = []
    for i, m in enumerate(methods):
        for j, ds in enumerate(datasets):
            v = base + 0.01 * i + 0.001 * j
            rows.append({"method": m, "dataset": ds, "maxF": v, "wF": v - 0.1, "MAE": 0.1 - 0.01 * j,
                         "S": v + 0.1, "meanE": v + 0.2, "HCE": 100.0 + 10 * j})
    return pd.DataFrame(rows)


def _parse_markdown(md: str) -> list[list[str]]:
    """Rows of the pipe table in ``md`` (header, separator, body), checking every row has the same width."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]
    header, sep = lines[0], lines[1]
    n = header.count("|") - 1
    assert set(sep.replace("|", "").replace(":", "").replace("-", "")) == set()
    assert all(ln.count("|") - ln.count("\\|") - 1 == n for ln in lines), "ragged Markdown table"
    return [rows[0]] + rows[2:]


def test_paper_rows_are_the_shipped_numbers():
    t1 = paper_rows("I")
    assert set(t1["dataset"]) == {VAL_SPLIT, *TEST_SPLITS, TE_ALL}
    row = t1[(t1["method"] == "DIS-SAM") & (t1["dataset"] == VAL_SPLIT)].iloc[0]
    assert (row["maxF"], row["HCE"]) == (0.920, 987)
    assert set(paper_rows("Table II")["dataset"]) == {*ZERO_SHOT_SETS, ZERO_SHOT_ALL}
    assert len(paper_rows("3")) == 5
    # cells read off the paper's tables (arXiv 2401.00248): a typo in the shipped file fails here
    for table, method, dataset, metric, value in (
            ("I", "IS-Net", VAL_SPLIT, "maxF", 0.791), ("I", "IS-Net", VAL_SPLIT, "HCE", 1116),
            ("I", "DIS-SAM", VAL_SPLIT, "maxF", 0.920), ("I", "DIS-SAM", "DIS-TE4", "HCE", 2609),
            ("I", "BiRefNet", "DIS-TE3", "wF", 0.893), ("II", "SAM", "COIFT", "maxF", 0.966),
            ("II", "DIS-SAM", "ThinObject5K-TE", "HCE", 218)):
        rows = paper_rows(table)
        cell = rows[(rows["method"] == method) & (rows["dataset"] == dataset)][metric]
        assert len(cell) == 1 and cell.iloc[0] == pytest.approx(value), (table, method, dataset, metric)
    with pytest.raises(ValueError, match="unknown table"):
        paper_rows("IV")


def test_table_one_layout_arrows_paper_values_and_te_all(tmp_path):
    ours = _long(["GrabCut (stage 1)", "DIS-SAM (3 min)"], [VAL_SPLIT, *TEST_SPLITS])
    wide, md = render_table(ours, "I", source_label="smoke, procedural", caption="Ours: 40 images per split.")
    groups = [VAL_SPLIT, *TEST_SPLITS, TE_ALL]
    arrows = ["maxF↑", "wF↑", "MAE↓", "S↑", "meanE↑", "HCE↓"]
    assert list(wide.columns) == ["Method"] + [f"{g} {a}" for g in groups for a in arrows]
    assert "DIS-SAM (paper)" in set(wide["Method"]) and "DIS-SAM (3 min) (smoke, procedural)" in set(wide["Method"])
    ours_row = wide[wide["Method"] == "DIS-SAM (3 min) (smoke, procedural)"].iloc[0]
    te = ours[(ours["method"] == "DIS-SAM (3 min)") & ours["dataset"].isin(TEST_SPLITS)]
    for m, a in zip(METRICS, arrows):
        assert ours_row[f"{TE_ALL} {a}"] == pytest.approx(te[m].mean())
    rows = _parse_markdown(md)
    assert len(rows[0]) == len(wide.columns) and len(rows) == 1 + len(wide)
    body = {r[0]: r[1:] for r in rows[1:]}
    assert body["DIS-SAM (paper)"][:6] == ["0.920", "0.877", "0.031", "0.909", "0.948", "987"]
    assert body["IS-Net (paper)"][-1] == "1016"
    assert "Ours: 40 images per split." in md and "mean of the four DIS-TE" in md and "arXiv 2401.00248" in md
    md_written = write_table(ours, "I", tmp_path, "table1", caption="Ours: 40 images per split.",
                             source_label="smoke, procedural")
    assert md_written == md and (tmp_path / "table1.md").read_text() == md
    csv = pd.read_csv(tmp_path / "table1.csv")
    assert list(csv.columns) == list(wide.columns) and len(csv) == len(wide)


def test_missing_values_show_as_dashes_and_paper_can_be_left_out():
    ours = _long(["only VD"], [VAL_SPLIT])
    wide, md = render_table(ours, "I", paper=False)
    assert list(wide["Method"]) == ["only VD (reproduced)"]
    assert [c for c in wide.columns if c.startswith(TEST_SPLITS[0])] == []  # empty groups are dropped
    row = _parse_markdown(md)[1]
    assert row[1:] == ["0.500", "0.400", "0.100", "0.600", "0.700", "100"]


def test_table_two_zero_shot_sets():
    ours = _long(["DIS-SAM"], list(ZERO_SHOT_SETS))
    wide, md = render_table(ours, "II")
    for ds in (*ZERO_SHOT_SETS, ZERO_SHOT_ALL):
        assert f"{ds} HCE↓" in wide.columns
    body = {r[0]: r[1:] for r in _parse_markdown(md)[1:]}
    assert body["HQ-SAM (paper)"][12:18] == ["0.934", "0.919", "0.035", "0.907", "0.947", "321"]
    assert body["DIS-SAM (reproduced)"][-6:] == ["–"] * 6  # nobody computed ALL for our rows


def test_table_three_check_marks_from_columns_or_labels():
    flags = pd.DataFrame([{"method": "ablation_box_mask", "dataset": VAL_SPLIT, "enrichment": False, "box": True,
                           "mask": True, **{m: 0.5 for m in METRICS}}])
    wide, md = render_table(flags, "III")
    assert list(wide.columns[:4]) == ["Method", "Enrichment", "Box", "Mask"]
    body = {r[0]: r[1:] for r in _parse_markdown(md)[1:]}
    assert body["ablation_box_mask (reproduced)"][:3] == ["", "✓", "✓"]
    assert body["enrichment + box + mask (paper)"][:3] == ["✓", "✓", "✓"]
    assert body["IS-Net (no enrichment, no box, no mask) (paper)"][:3] == ["", "", ""]
    assert ablation_flags("mask only") == {"enrichment": False, "box": False, "mask": True}


def test_render_refuses_incomplete_input():
    with pytest.raises(ValueError, match="lacks columns"):
        render_table(pd.DataFrame([{"method": "x", "dataset": VAL_SPLIT, "maxF": 0.5}]), "I")


def test_a_table_shows_rendered_in_a_notebook():
    """Notebooks display a Table: Jupyter renders its Markdown; plain text shows no pipe table."""
    ours = _long(["DIS-SAM"], [VAL_SPLIT])
    wide, md = render_table(ours, "I")
    table = Table(ours, wide, md)
    assert table._repr_markdown_() == md
    assert "|" not in repr(table) and "Table I." in repr(table) and f"{len(wide)} rows" in repr(table)


def _seed_scores(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": s, "maxF": v} for m, vs in values.items() for s, v in enumerate(vs)])


def test_table_three_claims_an_order_only_beyond_the_seed_spread():
    from dissam.repro.tables import order_claims

    claims = order_claims(_seed_scores({
        "no box, no mask (IS-Net)": [0.50, 0.52, 0.48],  # sd 0.02
        "box only": [0.60, 0.61, 0.59],  # +0.10 over none: an order
        "mask only": [0.51, 0.49, 0.50],  # +0.00 over none: within the spread
        "box + mask": [0.55, 0.56, 0.57],  # below box only by 0.04 (sd 0.01): reversed
        "box + mask + enrichment": [0.56, 0.56, 0.56],  # +0.00: within
    }))
    assert claims[0].startswith("box only > no box, no mask (IS-Net): holds (+0.100, sd 0.020)")
    assert "mask only > no box, no mask (IS-Net): within the seed spread" in claims[1]
    assert claims[2].startswith("box + mask > box only: reversed (-0.040")
    assert "within the seed spread" in claims[4] and len(claims) == 5


def test_ablation_seeds_are_runs_of_their_own_with_the_ablation_batch():
    import dataclasses

    from dissam.repro import runs
    from dissam.repro.config import AblationConfig, get_profile

    profile = dataclasses.replace(get_profile("tiny"), ablation=AblationConfig(max_iters=4, batch_size=2, seeds=(0, 1)))
    row = runs.ABLATIONS[1]
    assert (row.run(0), row.run(1)) == (row.name, f"{row.name}_seed1")
    assert runs._ablation_of(row.run(1)) == (row, 1)
    seeded = runs.ablation_profile(profile, 1)
    assert seeded.train.seed == profile.train.seed + 1 and seeded.train.batch_size == 2
    # The short box+mask+enrichment run is the main run only on the main run's budget *and* batch.
    same_budget = dataclasses.replace(profile, ablation=AblationConfig(max_iters=profile.train.max_iters, batch_size=2))
    assert runs.run_name(same_budget, runs.DISSAM_SHORT_RUN) == runs.DISSAM_SHORT_RUN
    same_batch = dataclasses.replace(same_budget, ablation=AblationConfig(max_iters=profile.train.max_iters))
    assert runs.run_name(same_batch, runs.DISSAM_SHORT_RUN) == runs.MAIN


def test_other_conventions_are_printed_beside_the_defaults_only_when_asked():
    from dissam.metrics import OTHER_CONVENTIONS
    from dissam.repro.tables import CONVENTIONS_NOTE

    ours = _long(["DIS-SAM"], [VAL_SPLIT, *TEST_SPLITS])
    ours["maxF (P/R-mean)"], ours["adpE"] = 0.55, 0.75
    plain_wide, plain_md = render_table(ours, "I")
    assert not any("adpE" in c or "P/R-mean" in c for c in plain_wide.columns)
    assert CONVENTIONS_NOTE not in plain_md
    assert plain_md == render_table(ours.drop(columns=list(OTHER_CONVENTIONS)), "I")[1]
    wide, md = render_table(ours, "I", conventions=True)
    assert [c for c in wide.columns if c.startswith(f"{VAL_SPLIT} ")][-2:] == [
        f"{VAL_SPLIT} maxF (P/R-mean)↑", f"{VAL_SPLIT} adpE↑"]
    body = {r[0]: r[1:] for r in _parse_markdown(md)[1:]}
    assert body["DIS-SAM (reproduced)"][6:8] == ["0.550", "0.750"]
    assert body["DIS-SAM (reproduced)"][-2:] == ["0.550", "0.750"]  # DIS-TE(ALL): the mean of the four
    assert body["DIS-SAM (paper)"][6:8] == ["–", "–"]
    assert CONVENTIONS_NOTE in md and "defaults" in CONVENTIONS_NOTE
