"""The photo fine-tune: the published general-use IS-Net fine-tuned on the CPU into a DIS-SAM refiner
(profile ``photo``), then put beside the smoke refiner on real photographs, each on GrabCut and on the
IS-Net crop as stage 1 (:func:`dissam.repro.real_photos.compare_refiners`).

``python -m dissam.repro.photo_finetune`` (``make photo-finetune``) trains what is missing and writes
``figures/photo/``: ``photo_finetune.csv`` (per photo, refiner and stage 1: area, outside the box,
interior kept, the IS-Net crop's thin structures kept), ``photo_finetune.png`` and ``cost.json`` (the
run's minutes, iterations and step time, with the CPU). The recipe and its results: docs/photo-finetune.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..cpuinfo import cpu_line
from ..model.checkpoint import CheckpointError
from ..outputs import BOX_COLOUR, box_edges, cutout, on_checkerboard
from .config import PORTABLE_TAG, Profile, get_profile
from .real_photos import ISNET_CROP, PHOTOS, THIN_PHOTOS, compare_refiners

SMOKE_REFINER, PHOTO_REFINER = "smoke refiner", "photo fine-tune"


def train_photo_refiner(profile: Profile, progress: bool = True) -> dict[str, Any]:
    """Data, stage-1 masks and the fine-tune of ``profile`` (the ``photo`` profile), each where missing
    (a stopped run resumes); returns its cost: minutes, iterations, seconds per step and the best
    validation score."""
    from ..model.init import isnet_init_checkpoint
    from .pipeline import run_stages

    isnet_init_checkpoint(profile.baselines.isnet_checkpoint)  # no weights: say so before any data is made
    result = run_stages(profile, progress=progress)
    steps = [h for h in result.history if "seconds" in h]
    per_step = np.diff([0.0] + [h["seconds"] for h in steps]) if steps else np.array([np.nan])
    return {"minutes": round(result.seconds / 60, 1), "iterations": result.iterations,
            "seconds_per_step_median": round(float(np.median(per_step)), 2),
            "best": {k: round(float(v), 4) for k, v in result.best.items()},
            "batch": profile.train.batch_size, "size": profile.train.size, "cpu": cpu_line()}


def compare(profile: Profile, smoke_checkpoint: str | Path, photos=PHOTOS + THIN_PHOTOS,
            device: str = "cpu") -> tuple[list[dict], pd.DataFrame]:
    """The smoke refiner (``smoke_checkpoint``) and the photo fine-tune on ``photos``, each on its own stage
    1 (GrabCut) and on the IS-Net crop from the profile's published weights."""
    from ..coarse import build_coarse
    from ..predictor import DisSam

    models = {SMOKE_REFINER: DisSam.from_checkpoint(smoke_checkpoint, device=device),
              PHOTO_REFINER: DisSam.from_checkpoint(profile.refiner_checkpoint, device=device)}
    crop = build_coarse("isnet", checkpoint=profile.baselines.isnet_checkpoint, device=device)
    return compare_refiners(models, crop, photos)


def comparison_figure(results: list[dict], path: str | Path | None = None):
    """One row per photo (``results`` of :func:`compare`): the photo with its box, the IS-Net crop, each
    refiner on GrabCut and on the IS-Net crop, and the last refiner's cut-out on the IS-Net crop."""
    from .figures import grid

    rows, titles = [], ["photo + box", ISNET_CROP]
    keys = list(results[0]["predictions"]) if results else []
    last = (keys[-1][0], ISNET_CROP) if keys else None  # the last refiner (the fine-tune) on the IS-Net crop
    titles += [f"{refiner}\non {stage1}" for refiner, stage1 in keys] + [f"cut-out,\n{last[0] if last else ''}"]
    for r in results:
        shown = r["image"].copy()
        preds = r["predictions"]
        shown[box_edges(shown.shape[:2], preds[keys[0]].box, 3)] = BOX_COLOUR
        row = [(shown, r["photo"].name), (r["reference"], "")] + [(preds[k].mask, "") for k in keys]
        row.append((on_checkerboard(cutout(r["image"], preds[last].mask)), ""))
        rows.append(row)
    return grid(rows, path, column_titles=titles, cell=2.0)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per refiner and stage 1 (%): the worst interior kept and the most area outside the box over the
    photos, and the mean share of the IS-Net crop's thin structures kept on the thin photos."""
    refined = table[table["refiner"] != "-"]
    thin = refined[refined["photo"].isin([p.name for p in THIN_PHOTOS])]
    grouped = refined.groupby(["refiner", "stage 1"], sort=False)
    return pd.DataFrame({
        "worst interior kept %": grouped["interior kept %"].min(),
        "most outside box %": grouped["outside box %"].max(),
        "thin kept % (rocket, tripod)": thin.groupby(["refiner", "stage 1"], sort=False)["IS-Net thin kept %"].mean(),
    }).reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dissam.repro.photo_finetune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke-checkpoint", type=Path, help="the smoke refiner to compare with (default: the "
                        "smoke profile's, from `make reproduce` or `make reproduce-portable`)")
    args = parser.parse_args(argv)
    profile = get_profile("photo")
    try:
        smoke = args.smoke_checkpoint or _smoke_refiner()
        if not Path(smoke).is_file():
            raise FileNotFoundError(f"smoke refiner not found: {smoke}")
        cost = train_photo_refiner(profile)
        results, table = compare(profile, smoke)
    except (FileNotFoundError, CheckpointError) as err:  # no weights, no smoke run: one line, exit 2
        print(f"photo-finetune: error: {err}", file=sys.stderr)
        return 2
    out = profile.figures_dir
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "photo_finetune.csv", index=False, float_format="%.1f")
    comparison_figure(results, out / "photo_finetune.png")
    (out / "cost.json").write_text(json.dumps({**cost, "smoke_checkpoint": str(Path(smoke).name)}, indent=2) + "\n")
    print(summary(table).round(1).to_string(index=False))
    print(f"wrote {out}/photo_finetune.csv, photo_finetune.png and cost.json")
    return 0


def _smoke_refiner() -> Path:
    """The smoke profile's refiner (portable run first: the committed set's), or a one-line error."""
    for profile in (get_profile("smoke", numerics="portable", tag=PORTABLE_TAG), get_profile("smoke", tag="")):
        if profile.refiner_checkpoint.is_file():
            return profile.refiner_checkpoint
    raise FileNotFoundError("no smoke refiner to compare with: run `make reproduce` (or give --smoke-checkpoint)")


if __name__ == "__main__":
    raise SystemExit(main())
