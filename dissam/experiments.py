"""The paper's experiments on a profile: which runs make which table rows, predictions, evaluation.

Table I rows: stage 1 alone, IS-Net (RGB only), DIS-SAM. Table III: the five input/enrichment
configurations, trained on the ablation budget. The ablation's no-box/no-mask/no-enrichment run *is*
IS-Net (all-zero channels contribute nothing, exactly as a 3-channel stem), so Table I reuses it and
names its budget. Table II evaluates the same models on the zero-shot sets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from . import workflow
from .config import Profile
from .data.folders import list_pairs, read_mask
from .data.transforms import to_original
from .train import RunSpec, train_refiner

STAGE1 = "stage1"


@dataclass(frozen=True)
class Ablation:
    """One row of Table III."""

    name: str
    label: str
    enrich: bool
    use_box: bool
    use_mask: bool

    def spec(self, profile: Profile) -> RunSpec:
        return RunSpec(name=self.name, use_box=self.use_box, use_mask=self.use_mask, enrich=self.enrich,
                       max_iters=profile.ablation.max_iters, max_minutes=profile.ablation.max_minutes)


ABLATIONS = (
    Ablation("ablation_none", "no box, no mask (IS-Net)", enrich=False, use_box=False, use_mask=False),
    Ablation("ablation_box", "box only", enrich=False, use_box=True, use_mask=False),
    Ablation("ablation_mask", "mask only", enrich=False, use_box=False, use_mask=True),
    Ablation("ablation_box_mask", "box + mask", enrich=False, use_box=True, use_mask=True),
    Ablation("ablation_box_mask_enrich", "box + mask + enrichment", enrich=True, use_box=True, use_mask=True),
)
ISNET_RUN = "ablation_none"
DISSAM_SHORT_RUN = "ablation_box_mask_enrich"


def stage1_label(profile: Profile) -> str:
    kind = profile.coarse.kind
    return {"sam": f"SAM ({profile.variant.sam_model_type})", "hq-sam": "HQ-SAM"}.get(kind, "GrabCut (stage 1)")


def checkpoint_of(profile: Profile, run: str) -> Path:
    return RunSpec(name=run).checkpoint(profile)


def train_ablations(profile: Profile, progress: bool = True) -> dict[str, Path]:
    """Train (or reuse) every Table III run on the ablation budget."""
    return {a.name: train_refiner(profile, a.spec(profile), progress=progress).checkpoint for a in ABLATIONS}


# ----------------------------------------------------------------------------- predictions
def prediction_dir(profile: Profile, method: str, split: str) -> Path:
    return profile.run_dir / "predictions" / method / split


def _write_predictions(out_dir: Path, preds: dict[str, np.ndarray]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem, pred in preds.items():
        cv2.imwrite(str(out_dir / f"{stem}.png"), pred)


def _read_predictions(out_dir: Path, stems: list[str]) -> dict[str, np.ndarray] | None:
    paths = [out_dir / f"{s}.png" for s in stems]
    if not all(p.exists() for p in paths):
        return None
    return {s: read_mask(p) for s, p in zip(stems, paths)}


def stage1_predictions(profile: Profile, split: str, segmenter=None) -> dict[str, np.ndarray]:
    """Stage-1 masks from the cache for the whole-GT box of each image (the 'SAM' row)."""
    out_dir = prediction_dir(profile, STAGE1, split)
    pairs = list_pairs(workflow.split_dir(profile, split))
    cached = _read_predictions(out_dir, [p.stem for p in pairs])
    if cached is not None:
        return cached
    from .data.enrichment import whole_mask

    source = workflow.coarse_source(profile, split, segmenter=segmenter)
    preds = {}
    for pair in pairs:
        image, gt = pair.load()
        targets = whole_mask(gt)
        preds[pair.stem] = source(pair.stem, image, targets[0].box) if targets else np.zeros_like(gt)
    _write_predictions(out_dir, preds)
    return preds


def load_run(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A trained refiner (optimised for inference) and the train config it was trained with."""
    from .model.checkpoint import load_refiner
    from .model.inference import optimize_for_inference

    meta = torch.load(path, map_location="cpu", weights_only=True).get("train_config", {})
    model = load_refiner(path, map_location=device)
    return optimize_for_inference(model), meta


@torch.inference_mode()
def refiner_predictions(profile: Profile, run: str, split: str, batch_size: int = 16) -> dict[str, np.ndarray]:
    """uint8 probability maps of a trained run on a split, at each GT's resolution (cached on disk)."""
    from .data.datasets import RefinerDataset
    from .model.inference import predict_prob

    out_dir = prediction_dir(profile, run, split)
    pairs = list_pairs(workflow.split_dir(profile, split))
    cached = _read_predictions(out_dir, [p.stem for p in pairs])
    if cached is not None:
        return cached
    model, meta = load_run(checkpoint_of(profile, run))
    use_box, use_mask = meta.get("use_box", True), meta.get("use_mask", True)
    dataset = RefinerDataset(workflow.split_dir(profile, split),
                             workflow.coarse_source(profile, split) if use_mask else None,
                             meta.get("size", profile.train.size), enrichment=None, augment=None,
                             use_box=use_box, use_mask=use_mask, in_ch=meta.get("in_ch", 5),
                             preload=profile.name != "paper")
    sizes = {p.stem: read_mask(p.gt_path).shape for p in pairs}
    preds = {}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        probs = predict_prob(model, batch["input"]).float().cpu().numpy()[:, 0]
        for stem, prob in zip(batch["stem"], probs):
            preds[stem] = to_original(prob, *sizes[stem])
    _write_predictions(out_dir, preds)
    return preds


def predictions(profile: Profile, method: str, split: str) -> dict[str, np.ndarray]:
    return stage1_predictions(profile, split) if method == STAGE1 else refiner_predictions(profile, method, split)


# ----------------------------------------------------------------------------- evaluation
def evaluate_method(profile: Profile, method: str, split: str) -> dict[str, float]:
    """Six-metric summary of one method on one split; per-image rows go to a CSV beside the predictions."""
    from .evaluate import evaluate_pairs

    preds = predictions(profile, method, split)
    pairs = list_pairs(workflow.split_dir(profile, split))
    records, summary = evaluate_pairs(((p.stem, preds[p.stem], read_mask(p.gt_path)) for p in pairs),
                                      progress=False)
    records.to_csv(prediction_dir(profile, method, split).with_suffix(".csv"), index=False)
    return summary


def evaluate_table(profile: Profile, methods: dict[str, str], splits: list[str]) -> pd.DataFrame:
    """Long table (method, dataset, six metrics) for ``methods`` {row label: run name or STAGE1}."""
    rows = []
    for label, method in methods.items():
        for split in splits:
            rows.append({"method": label, "dataset": split, **evaluate_method(profile, method, split)})
    return pd.DataFrame(rows)


def run_budget(profile: Profile, run: str) -> str:
    """'<iterations> it, <minutes> min' of a trained run, read from its last checkpoint."""
    last = RunSpec(name=run).last_checkpoint(profile)
    state = torch.load(last, map_location="cpu", weights_only=True)
    return f"{state['iteration']} it, {state['seconds'] / 60:.1f} min"


def save_results(df: pd.DataFrame, profile: Profile, name: str) -> Path:
    path = profile.run_dir / "results" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def load_results(profile: Profile, name: str) -> pd.DataFrame:
    return pd.read_csv(profile.run_dir / "results" / f"{name}.csv")


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def evaluate_main(profile: Profile) -> pd.DataFrame:
    """Stage 1 alone and the main DIS-SAM model on the validation and test splits (``dissam evaluate``)."""
    if not profile.refiner_checkpoint.exists():
        raise FileNotFoundError(f"no trained model at {profile.refiner_checkpoint}: run "
                                f"`python -m dissam train --profile {profile.name}` first")
    splits = workflow.available_splits(profile, (workflow.VAL_SPLIT, *workflow.TEST_SPLITS))
    workflow.cache_stage1(profile, splits)
    return evaluate_table(profile, {stage1_label(profile): STAGE1, "DIS-SAM": "main"}, splits)
