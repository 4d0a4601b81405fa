"""All of Tables I, II and III: which runs fill them on a profile, and their paper-format rendering.

:func:`table_one`, :func:`table_two` and :func:`table_three` evaluate the runs of :mod:`dissam.repro.runs`,
save the long results (``runs/<profile>/results/<name>.csv``) and write ``<name>.csv`` and ``<name>.md``
into the profile's figures folder; each returns a :class:`Table`, which a notebook shows rendered.
Rendering takes a long table (``method``, ``dataset`` and the six metrics, as
:func:`dissam.repro.evaluate.evaluate_table` or :func:`dissam.evaluation.summarize` give it). Paper rows come
from the shipped ``resources/paper_tables.csv`` (DIS-SAM paper, arXiv 2401.00248) and are marked
"(paper)"; ours are marked with ``source_label`` (e.g. "smoke, procedural"). Table I's DIS-TE(ALL) of
our rows is the mean of the four DIS-TE data-set values, the paper's convention.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from io import StringIO
from pathlib import Path

import pandas as pd

from ..data.splits import TE_ALL, TEST_SPLITS, VAL_SPLIT, ZERO_SHOT_ALL, ZERO_SHOT_SETS
from ..metrics import HIGHER_IS_BETTER, METRICS, OTHER_CONVENTIONS
from . import runs, stages
from .config import Profile
from .evaluate import evaluate_method, evaluate_pooled, evaluate_table

ARROWS = {m: "↑" if HIGHER_IS_BETTER[m] else "↓" for m in (*METRICS, *OTHER_CONVENTIONS)}
# Column groups of each table, in the paper's order.
GROUPS = {
    "I": (VAL_SPLIT, *TEST_SPLITS, TE_ALL),
    "II": (*ZERO_SHOT_SETS, ZERO_SHOT_ALL),
    "III": (VAL_SPLIT,),
}
TITLES = {
    "I": f"Comparison on DIS5K ({VAL_SPLIT}, DIS-TE1-4)",
    "II": f"Zero-shot comparison ({', '.join(ZERO_SHOT_SETS)})",
    "III": f"Ablation on {VAL_SPLIT}: GT enrichment, box channel, mask channel",
}
_DATASET_ALIASES = {"ThinObject5K": ZERO_SHOT_SETS[2]}  # the paper's name -> the data set's folder name
ABLATION_FLAGS = ("enrichment", "box", "mask")
CONVENTIONS_NOTE = ("maxF and meanE are the defaults (pysodmetrics): maxF the maximum over thresholds of the "
                    "mean per-image F curve, meanE the mean E curve. Beside them, the DIS-SAM authors' "
                    "conventions: maxF (P/R-mean), the maximum F of the data-set-mean precision and recall "
                    "curves (also IS-Net's validation), and adpE, the mean per-image adaptive E-measure "
                    "(threshold twice the mean prediction). The paper's rows fill the default columns as printed.")
# Paper rows print the paper's own DIS-TE(ALL) (resources/paper_tables.csv); four of its cells are not the
# mean of their TE1-4 (tests/test_paper_conventions.py::test_paper_te_all_cells_that_are_not_the_mean).
PAPER_TE_ALL_OFF_MEAN = (("SAM", "meanE"), ("HQ-SAM", "wF"), ("Pi-SAM", "HCE"), ("DIS-SAM (HQSeg-44K)", "S"))
PAPER_TE_ALL_NOTE = ("Paper rows print the paper's DIS-TE(ALL) as published; in four cells it is not the mean "
                     "of that row's TE1-4 (" + ", ".join(f"{m} {k}" for m, k in PAPER_TE_ALL_OFF_MEAN) + ").")
PAPER_NOTE = ("Paper rows: DIS-SAM paper (Liu, Fu, Jiang, Zhao; ICME 2025, arXiv 2401.00248), "
              "values as printed there.")
CONDENSED_METRICS = ("maxF", "MAE", "HCE")  # what a notebook shows of a table; the files hold all six


def _table_id(table: str) -> str:
    key = str(table).strip().upper().removeprefix("TABLE").strip()
    key = {"1": "I", "2": "II", "3": "III"}.get(key, key)
    if key not in GROUPS:
        raise ValueError(f"unknown table {table!r}: expected 'I', 'II' or 'III'")
    return key


@lru_cache(maxsize=1)
def _paper_csv() -> pd.DataFrame:
    text = resources.files("dissam").joinpath("resources/paper_tables.csv").read_text(encoding="utf-8")
    df = pd.read_csv(StringIO(text), dtype={"table": str})
    df["note"] = df["note"].fillna("")
    return df


def paper_rows(table: str) -> pd.DataFrame:
    """The paper's numbers for one table, long format: dataset, method, six metrics, note."""
    df = _paper_csv()
    df = df[df["table"] == _table_id(table)].drop(columns="table").reset_index(drop=True)
    df["dataset"] = df["dataset"].replace(_DATASET_ALIASES)
    return df


def ablation_flags(method: str) -> dict[str, bool]:
    """(enrichment, box, mask) from a Table III row label such as 'box + mask' or 'no box, no mask'."""
    label = method.lower()
    return {f: f in label and f"no {f}" not in label for f in ABLATION_FLAGS}


def _metric_columns(df: pd.DataFrame) -> list[str]:
    """The six metrics, then those of ``OTHER_CONVENTIONS`` that ``df`` has."""
    return [*METRICS, *(m for m in OTHER_CONVENTIONS if m in df.columns)]


def _with_te_all(df: pd.DataFrame) -> pd.DataFrame:
    """Add DIS-TE(ALL) = mean of the four DIS-TE data-set values for methods that have all four."""
    rows = []
    columns = _metric_columns(df)
    for method, group in df.groupby("method", sort=False):
        te = group[group["dataset"].isin(TEST_SPLITS)]
        if TE_ALL not in set(group["dataset"]) and set(te["dataset"]) == set(TEST_SPLITS):
            rows.append({"method": method, "dataset": TE_ALL, **te[columns].mean().to_dict()})
    return pd.concat([df, pd.DataFrame(rows)], ignore_index=True) if rows else df


def _wide(df: pd.DataFrame, table: str, label: str, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per method: Method column (+ check marks for Table III) and '<dataset> <metric><arrow>'."""
    groups = GROUPS[table]
    out = []
    for method, group in df.groupby("method", sort=False):
        row: dict[str, object] = {"Method": f"{method} ({label})"}
        if table == "III":
            flags = ablation_flags(method)
            for f in ABLATION_FLAGS:
                value = group[f].iloc[0] if f in group.columns and pd.notna(group[f].iloc[0]) else flags[f]
                row[f.capitalize()] = "✓" if bool(value) else ""
        by_set = group.drop_duplicates("dataset", keep="last").set_index("dataset")
        for ds in groups:
            for m in metrics:
                known = ds in by_set.index and m in by_set.columns
                row[f"{ds} {m}{ARROWS[m]}"] = float(by_set.loc[ds, m]) if known else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def _drop_empty_groups(wide: pd.DataFrame, table: str) -> pd.DataFrame:
    """Drop data-set column groups that no row fills (e.g. Table II's ALL when nobody reports it)."""
    keep = [c for c in wide.columns if not any(c.startswith(f"{ds} ") for ds in GROUPS[table])
            or wide[c].notna().any()]
    return wide[keep]


def _fmt(column: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.0f}" if column.endswith("HCE↓") else f"{value:.3f}"


def to_markdown(wide: pd.DataFrame, title: str = "", caption: str = "") -> str:
    """A pipe table (all cells formatted: 3 decimals, HCE as an integer, '–' for missing)."""
    cols = list(wide.columns)
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" if c == "Method" else ":---:" for c in cols) + "|")
    for _, row in wide.iterrows():
        lines.append("| " + " | ".join(_fmt(c, row[c]).replace("|", "\\|") for c in cols) + " |")
    if caption:
        lines += ["", caption]
    return "\n".join(lines) + "\n"


def condensed(wide: pd.DataFrame, metrics: tuple[str, ...] = CONDENSED_METRICS) -> pd.DataFrame:
    """A short view of a printed table (``wide``, as :func:`render_table` gives it): one row per method (the
    index), columns (data set, metric with its arrow) for ``metrics`` only, data sets in the table's order,
    rounded as the Markdown prints them: 3 decimals, HCE a whole number (missing: <NA>). Table III's check
    marks are left out (the row labels say the same)."""
    found: dict[tuple[str, str], str] = {}  # (data set, metric) -> the wide column
    for column in wide.columns:
        dataset, _, metric = str(column).rpartition(" ")
        if dataset and metric.rstrip("↑↓") in metrics:
            found[dataset, metric.rstrip("↑↓")] = column
    datasets = list(dict.fromkeys(dataset for dataset, _ in found))
    columns = [found[d, m] for d in datasets for m in metrics if (d, m) in found]
    out = wide.set_index("Method")[columns].astype(float)
    out.columns = pd.MultiIndex.from_tuples([tuple(c.rsplit(" ", 1)) for c in columns], names=["data set", "metric"])
    for column in out.columns:
        out[column] = out[column].round().astype("Int64") if column[1].startswith("HCE") else out[column].round(3)
    return out


def render_table(df_long: pd.DataFrame, table: str = "I", paper: bool = True, source_label: str = "reproduced",
                 caption: str | None = None, conventions: bool = False) -> tuple[pd.DataFrame, str]:
    """(wide DataFrame, Markdown) of Table ``table``: the paper's rows, marked "(paper)", then ours.

    ``df_long``: columns method, dataset and the six metrics (Table III may add boolean enrichment/box/mask
    columns; otherwise the check marks come from the method label). ``caption`` says what data and budget
    produced our rows. ``conventions``: also the columns of ``OTHER_CONVENTIONS`` (from ``df_long``'s
    columns of those names; '–' where absent), with a note saying which convention is the default."""
    table = _table_id(table)
    metrics = (*METRICS, *OTHER_CONVENTIONS) if conventions else METRICS
    missing = {"method", "dataset", *METRICS} - set(df_long.columns)
    if missing:
        raise ValueError(f"df_long lacks columns {sorted(missing)}")
    ours = df_long.copy()
    if table == "I":
        ours = _with_te_all(ours)
    parts = []
    if paper:
        parts.append(_wide(paper_rows(table), table, "paper", metrics))
    if len(ours):
        parts.append(_wide(ours, table, source_label, metrics))
    if not parts:
        raise ValueError("nothing to render: no rows of ours and paper=False")
    wide = _drop_empty_groups(pd.concat(parts, ignore_index=True), table)
    notes = [caption] if caption else []
    if conventions:
        notes.append(CONVENTIONS_NOTE)
    if paper:
        notes.append(PAPER_NOTE)
    if table == "I" and len(ours):
        notes.append(f"{TE_ALL} of our rows: mean of the four DIS-TE data-set values (the paper's convention: "
                     "the average of the TE1-TE4 results).")
    if table == "III":
        notes.append("✓ = GT enrichment / box channel / coarse-mask channel used; absent channels are all-zero.")
    markdown = to_markdown(wide, f"Table {table}. {TITLES[table]}", " ".join(notes))
    return wide, markdown


def _write_files(wide: pd.DataFrame, markdown: str, out_dir: str | Path, name: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wide.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")


def write_table(df_long: pd.DataFrame, table: str, out_dir: str | Path, name: str, paper: bool = True,
                caption: str | None = None, source_label: str = "reproduced") -> str:
    """Write ``<out_dir>/<name>.csv`` (full precision) and ``<out_dir>/<name>.md``; returns the Markdown."""
    wide, markdown = render_table(df_long, table, paper=paper, source_label=source_label, caption=caption)
    _write_files(wide, markdown, out_dir, name)
    return markdown


# ----------------------------------------------------------------------------- the tables of a profile
@dataclass
class Table:
    """One reproduced table: ``long`` (our rows as evaluated: method, dataset, six metrics), ``wide`` (the
    paper's rows and ours, as printed) and ``markdown`` (what ``<name>.md`` holds). A notebook shows it
    as the rendered table, or :meth:`condensed`. Table III also keeps ``per_seed`` (one row per
    configuration and seed, as :func:`ablation_seed_scores` gives it)."""

    long: pd.DataFrame
    wide: pd.DataFrame
    markdown: str
    per_seed: pd.DataFrame | None = None

    def condensed(self, metrics: tuple[str, ...] = CONDENSED_METRICS) -> pd.DataFrame:
        """The paper's rows and ours for ``metrics`` only, rounded (:func:`condensed`)."""
        return condensed(self.wide, metrics)

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __repr__(self) -> str:  # plain-text front ends: what it is, not the pipe text
        return f"Table({self.markdown.splitlines()[0].strip('*')!r}, {len(self.wide)} rows)"


def save_results(df: pd.DataFrame, profile: Profile, name: str) -> Path:
    """The long results of a table, full precision, as ``runs/<profile>/results/<name>.csv``."""
    path = profile.run_dir / "results" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def shows_other_conventions(profile: Profile) -> bool:
    """Whether a profile's Tables I and II print ``OTHER_CONVENTIONS`` beside the defaults: the paper profile."""
    return profile.name == "paper"


def _publish(df: pd.DataFrame, profile: Profile, table: str, name: str, caption: str,
             conventions: bool = False) -> Table:
    """Save the long results, render the paper-format table and write it into the figures folder."""
    save_results(df, profile, name)
    source = f"{profile.name}, {'procedural' if profile.data.root is None else 'measured'}"
    wide, markdown = render_table(df, table, paper=True, source_label=source, caption=caption,
                                  conventions=conventions)
    _write_files(wide, markdown, profile.figures_dir, name)
    return Table(df, wide, markdown)


def table_one(profile: Profile) -> Table:
    """Table I: stage 1 alone, the baselines and DIS-SAM on DIS-VD and DIS-TE1..4."""
    methods = {**runs.baseline_methods(profile), **runs.dissam_methods(profile, short=True)}
    conventions = shows_other_conventions(profile)
    df = evaluate_table(profile, methods, [VAL_SPLIT, *TEST_SPLITS], conventions)
    caption = (f"Table I, reproduced on the {runs.describe(profile)}. Training budgets (iterations) in "
               f"brackets. {TE_ALL} is the mean of TE1-TE4 for our rows. {PAPER_TE_ALL_NOTE}")
    return _publish(df, profile, "I", "table1", caption, conventions)


def table_two(profile: Profile) -> Table | None:
    """Table II: zero-shot transfer to the shifted sets, and ALL = their images pooled as one set
    (None when the data root has none of the sets)."""
    splits = stages.available_splits(profile, profile.data.zero_shot_sets)
    if not splits:
        return None
    methods = {**runs.baseline_methods(profile), **runs.dissam_methods(profile, short=False)}
    conventions = shows_other_conventions(profile)
    df = evaluate_table(profile, methods, splits, conventions)
    pooled = [{"method": label, "dataset": ZERO_SHOT_ALL, **evaluate_pooled(profile, method, splits, conventions)}
              for label, method in methods.items()]
    df = pd.concat([df, pd.DataFrame(pooled)], ignore_index=True)
    stand_in = " (procedural families standing in for these sets)" if profile.data.root is None else ""
    caption = (f"Table II, zero-shot, reproduced on the {runs.describe(profile)}{stand_in}; no training on "
               "these sets. Our ALL pools the images of the three sets into one set; the paper does not say how "
               "its ALL is formed (its ALL HCE is larger than each set's, so it is not a mean of the three).")
    return _publish(df, profile, "II", "table2", caption, conventions)


# Table III's claims in the paper, as (higher row, lower row) on maxF.
ABLATION_ORDER = (("box only", "no box, no mask (IS-Net)"), ("mask only", "no box, no mask (IS-Net)"),
                  ("box + mask", "box only"), ("box + mask", "mask only"),
                  ("box + mask + enrichment", "box + mask"))


def ablation_seed_scores(profile: Profile) -> pd.DataFrame:
    """Every Table III row on DIS-VD: one row per (configuration, seed), the six metrics. Row 1 is the
    published IS-Net when ``isnet.pth`` is given (:func:`dissam.repro.runs.ablation_row`; one model, evaluated
    once and repeated for every seed, so its spread is zero)."""
    rows, scores = [], {}
    for seed in profile.ablation.seeds:
        for ablation in runs.ABLATIONS:
            label, method = runs.ablation_row(profile, ablation, seed)
            if method not in scores:
                scores[method] = evaluate_method(profile, method, VAL_SPLIT)
            rows.append({"method": label, "seed": seed, "dataset": VAL_SPLIT, "enrichment": ablation.enrich,
                         "box": ablation.use_box, "mask": ablation.use_mask, **scores[method]})
    return pd.DataFrame(rows)


def seed_stats(per_seed: pd.DataFrame, metric: str = "maxF") -> pd.DataFrame:
    """Mean and standard deviation over seeds of ``metric`` per Table III row (sd 0 with one seed)."""
    return per_seed.groupby("method", sort=False)[metric].agg(["mean", "std"]).fillna(0.0)


WITHIN_SPREAD = "within the seed spread"


def order_checks(per_seed: pd.DataFrame, metric: str = "maxF", labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The paper's Table III orders (:data:`ABLATION_ORDER`) checked against the spread over seeds, one row
    per order: ``higher``, ``lower`` (row labels), ``gap`` (mean of ``higher`` minus mean of ``lower``),
    ``sd`` (the larger of the two rows' standard deviations over seeds) and ``verdict``: "holds" or
    "reversed" when ``|gap| > sd``, else :data:`WITHIN_SPREAD` (with one seed sd is 0: any gap counts).
    ``labels`` renames a row of :data:`ABLATION_ORDER` to the label it has in ``per_seed``."""
    stats = seed_stats(per_seed, metric)
    labels = labels or {}
    rows = []
    for high, low in ((labels.get(h, h), labels.get(lo, lo)) for h, lo in ABLATION_ORDER):
        gap = stats.loc[high, "mean"] - stats.loc[low, "mean"]
        spread = max(stats.loc[high, "std"], stats.loc[low, "std"])
        verdict = WITHIN_SPREAD if abs(gap) <= spread else ("holds" if gap > 0 else "reversed")
        rows.append({"higher": high, "lower": low, "gap": gap, "sd": spread, "verdict": verdict})
    return pd.DataFrame(rows, columns=["higher", "lower", "gap", "sd", "verdict"])


def order_claims(per_seed: pd.DataFrame, metric: str = "maxF", labels: dict[str, str] | None = None) -> list[str]:
    """:func:`order_checks` as sentences (Table III's caption): a gap in the mean is called an order only
    when it exceeds the larger of the two rows' standard deviations (with one seed: any gap)."""
    claims = []
    for row in order_checks(per_seed, metric, labels).itertuples(index=False):
        if row.verdict == WITHIN_SPREAD:
            verdict = f"{WITHIN_SPREAD} ({row.gap:+.3f} vs sd {row.sd:.3f}): no order claimed"
        else:
            verdict = f"{row.verdict} ({row.gap:+.3f}, sd {row.sd:.3f})"
        claims.append(f"{row.higher} > {row.lower}: {verdict}")
    return claims


def ablation_labels(profile: Profile) -> dict[str, str]:
    """{row label of :data:`ABLATION_ORDER`: the label it has in the profile's Table III}: row 1 says what
    it is (the published IS-Net, or our RGB-only stand-in; :func:`dissam.repro.runs.ablation_row`)."""
    return {runs.ABLATIONS[0].label: runs.ablation_row(profile, runs.ABLATIONS[0])[0]}


def table_three(profile: Profile) -> Table:
    """Table III: the five (enrichment, box, mask) configurations on DIS-VD, one budget for all, the mean
    over the profile's seeds; the caption gives the spread and which of the paper's orders it supports."""
    per_seed = ablation_seed_scores(profile)
    save_results(per_seed, profile, "table3_seeds")
    flags = ["method", "dataset", "enrichment", "box", "mask"]
    df = per_seed.groupby(flags, sort=False)[list(METRICS)].mean().reset_index()
    seeds = profile.ablation.seeds
    row_one = runs.ablation_row(profile, runs.ABLATIONS[0])[0]
    caption = _table_three_caption(profile, row_one)
    if len(seeds) > 1:
        spread = seed_stats(per_seed)["std"]
        caption += (f" Each row is the mean of {len(seeds)} seeds; maxF standard deviation over seeds: "
                    + ", ".join(f"{m} {v:.3f}" for m, v in spread.items()) + ". The paper's orders on maxF: "
                    + "; ".join(order_claims(per_seed, labels=ablation_labels(profile))) + ".")
    table = _publish(df, profile, "III", "table3", caption)
    table.per_seed = per_seed
    return table


def _table_three_caption(profile: Profile, row_one: str) -> str:
    """What Table III's rows are: their budget and initialisation, and what row 1 is."""
    budget = runs.run_budget(profile, runs.ABLATIONS[1].name)
    batch = runs.ablation_budget(profile)[1]
    init = {"scratch": "from scratch", "isnet": "from the published IS-Net"}[profile.variant.refiner_init]
    main = (" (the main run's budget, so the last row is the main model, as in the paper)"
            if profile.ablation.main_budget else
            " (the ablation budget, shorter than the main run's; the paper's last row is its main model)")
    first = ("Row 1 is the published IS-Net (isnet.pth), as the paper's row 1 is the original IS-Net."
             if runs.ISNET_OFFICIAL == runs.ablation_row(profile, runs.ABLATIONS[0])[1] else
             f"Row 1 is our stand-in for the paper's original IS-Net: {row_one.split('(', 1)[1].rstrip(')')}.")
    return (f"Table III, ablation on {VAL_SPLIT}, reproduced on the {runs.describe(profile)}; rows 2-5 trained "
            f"{init} on the same budget, {budget} at batch {batch}{main}. {first} Absent channels are fed as "
            "all-zero images.")
