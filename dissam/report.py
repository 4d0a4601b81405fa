"""What each notebook shows, one call each: the tables and figures of the paper for a profile.

The notebooks narrate; these functions compute (from the cached runs and predictions) and save
tables (CSV + Markdown) and figures (PNG) under ``profile.figures_dir``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import experiments as ex
from . import figures, workflow
from .config import Profile
from .data.enrichment import enrich_mask
from .data.folders import list_pairs, read_image, read_mask


def _describe(profile: Profile) -> str:
    data = "procedural DIS-like data" if profile.data.root is None else f"data from {profile.data.root}"
    return f"{profile.name} profile, {data}, stage 1 = {ex.stage1_label(profile)}"


# ----------------------------------------------------------------------------- 00 data
def enrichment_example(profile: Profile, split: str = workflow.TRAIN_SPLIT, path: Path | None = None):
    """Fig. 2 on the training image with the most components (ties: the first)."""
    best, best_parts = None, []
    for pair in list_pairs(workflow.split_dir(profile, split))[:200]:
        parts = enrich_mask(read_mask(pair.gt_path), profile.variant.enrichment)
        if len(parts) > len(best_parts):
            best, best_parts = pair, parts
    image, gt = best.load()
    return figures.enrichment_figure(image, gt, best_parts, path)


# ----------------------------------------------------------------------------- 01 stage 1
def manifest_table(manifests: dict[str, dict]) -> pd.DataFrame:
    keys = ["images", "boxes", "encoder_calls", "cache_hits", "seconds"]
    return pd.DataFrame([{"cache": name, **{k: m.get(k) for k in keys}} for name, m in manifests.items()])


def stage1_examples(profile: Profile, split: str = workflow.VAL_SPLIT, n: int = 6, path: Path | None = None):
    """Image with its box | stage-1 mask | GT, for the first ``n`` images of a split."""
    preds = ex.stage1_predictions(profile, split)
    rows = []
    for pair in list_pairs(workflow.split_dir(profile, split))[:n]:
        image, gt = pair.load()
        rows.append([(image, pair.stem), (preds[pair.stem], ""), (gt, "")])
    return figures.grid(rows, path, column_titles=["image", ex.stage1_label(profile), "GT"])


# ----------------------------------------------------------------------------- 02 training
def stage1_val_scores(profile: Profile) -> dict[str, float]:
    """Stage 1's maxF/MAE on the validation split, the reference line of the training curves."""
    summary = ex.evaluate_method(profile, ex.STAGE1, workflow.VAL_SPLIT)
    return {"maxF": summary["maxF"], "MAE": summary["MAE"]}


def training_figure(profile: Profile, history: list[dict], path: Path | None = None):
    return figures.training_curves(history, path, reference=stage1_val_scores(profile),
                                   title=f"main refiner, {_describe(profile)}")


# ----------------------------------------------------------------------------- tables
def _write(df: pd.DataFrame, profile: Profile, table: str, name: str, caption: str) -> str:
    from .tables import write_table

    ex.save_results(df, profile, name)
    source = f"{profile.name}, {'procedural' if profile.data.root is None else 'measured'}"
    return write_table(df, table, profile.figures_dir, name, paper=True, caption=caption, source_label=source)


def isnet_row(profile: Profile) -> tuple[str, str]:
    """(label, method) of Table I/II's IS-Net row: the published model when given, else our stand-in."""
    if profile.baselines.isnet_checkpoint is not None:
        return "IS-Net (published isnet.pth)", ex.ISNET_OFFICIAL
    return f"IS-Net-style: RGB only, our recipe ({ex.run_budget(profile, ex.ISNET_RUN)})", ex.ISNET_RUN


def baseline_methods(profile: Profile) -> dict[str, str]:
    """Stage 1, HQ-SAM (when its checkpoint is given) and IS-Net: the rows before ours."""
    methods = {ex.stage1_label(profile): ex.STAGE1}
    if profile.baselines.hq_sam_checkpoint is not None:
        methods["HQ-SAM"] = ex.HQ_SAM
    label, method = isnet_row(profile)
    methods[label] = method
    return methods


def _dissam_methods(profile: Profile, short: bool) -> dict[str, str]:
    methods = {}
    if short and ex.run_name(profile, ex.DISSAM_SHORT_RUN) != ex.MAIN:
        methods[f"DIS-SAM ({ex.run_budget(profile, ex.DISSAM_SHORT_RUN)})"] = ex.DISSAM_SHORT_RUN
    methods[f"DIS-SAM ({ex.run_budget(profile, ex.MAIN)})"] = ex.MAIN
    return methods


def table_one(profile: Profile) -> tuple[pd.DataFrame, str]:
    """Table I: stage 1 alone, the baselines and DIS-SAM on DIS-VD and DIS-TE1..4."""
    methods = {**baseline_methods(profile), **_dissam_methods(profile, short=True)}
    df = ex.evaluate_table(profile, methods, [workflow.VAL_SPLIT, *workflow.TEST_SPLITS])
    caption = (f"Table I, reproduced on the {_describe(profile)}. Training budgets (iterations) in brackets. "
               f"DIS-TE(ALL) is the mean of TE1-TE4.")
    return df, _write(df, profile, "I", "table1", caption)


def table_two(profile: Profile) -> tuple[pd.DataFrame, str] | None:
    """Table II: zero-shot transfer to the shifted sets, and ALL = their images pooled as one set."""
    splits = workflow.available_splits(profile, profile.data.zero_shot_sets)
    if not splits:
        return None
    methods = {**baseline_methods(profile), **_dissam_methods(profile, short=False)}
    df = ex.evaluate_table(profile, methods, splits)
    pooled = [{"method": label, "dataset": "ALL", **ex.evaluate_pooled(profile, method, splits)}
              for label, method in methods.items()]
    df = pd.concat([df, pd.DataFrame(pooled)], ignore_index=True)
    stand_in = " (procedural families standing in for these sets)" if profile.data.root is None else ""
    caption = (f"Table II, zero-shot, reproduced on the {_describe(profile)}{stand_in}; no training on these "
               "sets. Our ALL pools the images of the three sets into one set; the paper does not say how its "
               "ALL is formed (its ALL HCE is larger than each set's, so it is not a mean of the three).")
    return df, _write(df, profile, "II", "table2", caption)


def table_three(profile: Profile) -> tuple[pd.DataFrame, str]:
    """Table III: the five (enrichment, box, mask) configurations on DIS-VD, one budget for all."""
    rows = []
    for ablation in ex.ABLATIONS:
        summary = ex.evaluate_method(profile, ablation.name, workflow.VAL_SPLIT)
        rows.append({"method": ablation.label, "dataset": workflow.VAL_SPLIT, "enrichment": ablation.enrich,
                     "box": ablation.use_box, "mask": ablation.use_mask, **summary})
    df = pd.DataFrame(rows)
    budget = ex.run_budget(profile, ex.ABLATIONS[0].name)
    caption = (f"Table III, ablation on DIS-VD, reproduced on the {_describe(profile)}; every row trained "
               f"from scratch on the same budget ({budget}). Absent channels are fed as all-zero images.")
    return df, _write(df, profile, "III", "table3", caption)


# ----------------------------------------------------------------------------- qualitative figures
def _hce(preds: dict[str, np.ndarray], gts: dict[str, np.ndarray], stems: list[str]) -> list[float]:
    from .metrics import DISMetrics

    values = []
    for stem in stems:
        m = DISMetrics()
        m.step(preds[stem], gts[stem])
        values.append(m.results()["HCE"])
    return values


def pick_examples(profile: Profile, split: str, n: int, method: str = "main") -> list[str]:
    """The ``n`` images where the method improves most on stage 1 (by MAE): where the effect is visible."""
    ours, base = ex.predictions(profile, method, split), ex.predictions(profile, ex.STAGE1, split)
    pairs = list_pairs(workflow.split_dir(profile, split))
    gain = []
    for pair in pairs:
        gt = read_mask(pair.gt_path).astype(np.float32) / 255
        err = lambda p: np.abs(p.astype(np.float32) / 255 - gt).mean()  # noqa: E731
        gain.append((err(base[pair.stem]) - err(ours[pair.stem]), pair.stem))
    return [stem for _, stem in sorted(gain, reverse=True)[:n]]


def method_grid(profile: Profile, split: str, methods: dict[str, str], stems: list[str], path: Path | None = None):
    """Fig. 3 / Fig. 5: image | each method's mask (HCE under it) | GT."""
    folder = workflow.split_dir(profile, split)
    images = [read_image(next((folder / "im").glob(f"{s}.*"))) for s in stems]
    gts = {s: read_mask(folder / "gt" / f"{s}.png") for s in stems}
    columns = {}
    for label, method in methods.items():
        preds = ex.predictions(profile, method, split)  # one read of the split per method, not per image
        columns[label] = [preds[s] for s in stems]
    scores = {label: _hce({s: c for s, c in zip(stems, columns[label])}, gts, stems) for label in methods}
    return figures.qualitative_grid(images, columns, [gts[s] for s in stems], path, scores)


def figure_three(profile: Profile, n: int = 4):
    methods = {ex.stage1_label(profile): ex.STAGE1, "IS-Net": isnet_row(profile)[1], "DIS-SAM": ex.MAIN}
    stems = pick_examples(profile, workflow.VAL_SPLIT, n)
    return method_grid(profile, workflow.VAL_SPLIT, methods, stems, profile.figures_dir / "fig3_qualitative.png")


def figure_five(profile: Profile, n: int = 3):
    stems = pick_examples(profile, workflow.VAL_SPLIT, n, method=ex.DISSAM_SHORT_RUN)
    methods = {a.label: a.name for a in ex.ABLATIONS}
    return method_grid(profile, workflow.VAL_SPLIT, methods, stems, profile.figures_dir / "fig5_ablation.png")


# ----------------------------------------------------------------------------- 06 figures
def demo_model(profile: Profile):
    """The main checkpoint with the profile's stage 1, as users run it (``DisSam``)."""
    from .pipeline import DisSam

    return DisSam.from_checkpoint(profile.refiner_checkpoint, coarse=workflow.build_segmenter(profile))


def figure_one(profile: Profile, model=None):
    """Fig. 1 on the validation image where the refiner helps most."""
    model = model or demo_model(profile)
    stem = pick_examples(profile, workflow.VAL_SPLIT, 1)[0]
    folder = workflow.split_dir(profile, workflow.VAL_SPLIT)
    image, gt = read_image(next((folder / "im").glob(f"{stem}.*"))), read_mask(folder / "gt" / f"{stem}.png")
    from .data.prompts import box_from_mask

    pred = model.predict(image, box_from_mask(gt))
    return figures.pipeline_figure(image, pred.box, pred.coarse, pred.prob, gt, profile.figures_dir / "fig1_pipeline.png")


def figure_four(profile: Profile, model=None, max_boxes: int = 4):
    """Fig. 4: a multi-object validation image, one box per object, then one around all of them."""
    model = model or demo_model(profile)
    folder = workflow.split_dir(profile, workflow.VAL_SPLIT)
    best, parts = None, []
    for pair in list_pairs(folder):
        gt = read_mask(pair.gt_path)
        min_area = 0.01 * gt.size  # whole objects, not specks
        comps = [c for c in enrich_mask(gt) if c.mask.sum() >= min_area]
        if len(comps) > len(parts):
            best, parts = pair, comps
    image, gt = best.load()
    from .data.prompts import box_from_mask

    boxes = [c.box for c in parts[:max_boxes - 1]] + [box_from_mask(gt)]
    preds = [model.predict(image, b) for b in boxes]
    return figures.multi_box_figure(image, boxes, [p.coarse for p in preds], [p.mask for p in preds],
                                    profile.figures_dir / "fig4_boxes.png")


def real_photos(profile: Profile, model=None) -> tuple[pd.DataFrame, object]:
    """Stage 1 | refined | cut-out on real photographs (scikit-image's), with the share of stage 1's
    interior the refiner keeps: a refiner must not hollow out a solid object that stage 1 found."""
    from . import real_photos as rp

    results, table = rp.run_photos(model or demo_model(profile))
    figure = rp.photos_figure(results, profile.figures_dir / "real_photos.png")
    table.to_csv(profile.figures_dir / "real_photos.csv", index=False, float_format="%.1f")
    return table, figure


def figure_index(profile: Profile) -> pd.DataFrame:
    """Every figure and table written for the profile."""
    files = sorted(p for p in profile.figures_dir.glob("*") if p.suffix in (".png", ".md", ".csv"))
    return pd.DataFrame({"file": [p.name for p in files], "bytes": [p.stat().st_size for p in files]})

