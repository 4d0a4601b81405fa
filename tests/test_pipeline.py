"""DisSam: any user image, box clipping and errors, the embedding reused across boxes, final masks,
checkpoint loading and the `dissam predict` entry point (run_predict)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dissam.repro import config
from dissam.predict_files import run_predict
from dissam.variant import Variant
from dissam.data.prompts import BoxError
from dissam.data.images import as_rgb
from dissam.predictor import CheckpointError, DisSam, final_mask

H, W = 60, 80
OBJ = (20, 15, 45, 40)  # x0, y0, x1, y1 of the red square
OBJ2 = (55, 30, 72, 52)


class FilledBoxSegmenter:
    """Stage-1 stand-in: the filled box (a poor coarse mask); counts image embeddings."""

    def __init__(self) -> None:
        self.encoder_calls = 0
        self.hw = None

    def set_image(self, image: np.ndarray) -> None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.hw = image.shape[:2]
        self.encoder_calls += 1

    def predict(self, box):
        mask = np.zeros(self.hw, np.uint8)
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = 255
        return SimpleNamespace(mask=mask, logits=None, score=0.5)


class RedRefiner(torch.nn.Module):
    """Stage-2 stand-in that works: red pixels inside the box channel; ``gain`` scales confidence."""

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.config = {"in_ch": 5, "width": 0.0}
        self.gain = gain

    def forward(self, x: torch.Tensor):
        rgb = x[:, :3] + 0.5
        red = rgb[:, 0:1] - torch.maximum(rgb[:, 1:2], rgb[:, 2:3])
        prob = torch.sigmoid(30 * (red - 0.3)) * x[:, 4:5] * self.gain
        return [prob] * 6, []

    def predict(self, x: torch.Tensor) -> torch.Tensor:  # maps[0] alone, as ISNetDIS.predict
        return self.forward(x)[0][0]


def scene(h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """Dark green textured background with two red squares; returns (rgb, gt of the first square)."""
    rng = np.random.default_rng(0)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 1] = 60 + rng.integers(0, 30, (h, w))
    rgb[..., 2] = 40
    gt = np.zeros((h, w), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate((OBJ, OBJ2)):
        rgb[y0:y1, x0:x1] = (220, 30, 30)
        if k == 0:
            gt[y0:y1, x0:x1] = 255
    return rgb, gt


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture()
def model() -> DisSam:
    return DisSam(RedRefiner(), FilledBoxSegmenter(), size=64, device="cpu")


# ---- any image a user has ----
def test_as_rgb_arrays_of_every_layout_and_dtype():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    for arr in (gray, gray[..., None]):
        out = as_rgb(arr)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8 and (out[..., 2] == gray).all()
    rgba = np.dstack([np.full((3, 4, 3), 7, np.uint8), np.zeros((3, 4), np.uint8)])
    assert (as_rgb(rgba) == 7).all()  # alpha dropped, colour kept even where transparent
    assert as_rgb(np.full((2, 2), 65535, np.uint16)).max() == 255
    assert as_rgb(np.full((2, 2), 257 * 100, np.uint16)).max() == 100
    assert as_rgb(np.full((2, 2, 3), 0.5, np.float32)).max() == 128  # floats in 0..1
    assert as_rgb(np.full((2, 2, 3), 200.0)).max() == 200  # floats in 0..255
    assert as_rgb(np.ones((2, 2), bool)).min() == 255
    with pytest.raises(ValueError, match="HxW"):
        as_rgb(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("kind", ["rgba", "gray", "gray16", "rgb16_array", "exif"])
def test_predict_accepts_user_images(kind, model, tmp_path):
    rgb, gt = scene()
    path = tmp_path / "img.png"
    if kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full((H, W), 128, np.uint8)]), "RGBA").save(path)
        image: object = path
    elif kind == "gray":  # grayscale: red square is brighter than the background, but not red
        Image.fromarray(rgb.max(axis=2)).save(path)
        image = path
    elif kind == "gray16":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)
        image = path
    elif kind == "rgb16_array":
        image = rgb.astype(np.uint16) * 257
    else:  # stored rotated, EXIF orientation 6 (rotate 90 degrees clockwise to display)
        path = tmp_path / "img.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
        image = path
    assert as_rgb(image).shape == (H, W, 3)
    pred = model.predict(image, (10, 5, 55, 50))
    assert pred.mask.shape == pred.prob.shape == pred.coarse.shape == (H, W)
    assert pred.mask.dtype == pred.prob.dtype == pred.coarse.dtype == np.uint8
    assert set(np.unique(pred.mask)) <= {0, 255}
    if kind in ("rgba", "rgb16_array", "exif"):  # colour survives: the red square is found
        assert iou(pred.mask, gt) > 0.8


def test_any_size_and_aspect(model):
    for h, w in ((17, 301), (300, 23), (1, 5)):
        rgb = np.zeros((h, w, 3), np.uint8)
        pred = model.predict(rgb, (0, 0, w, h))
        assert pred.mask.shape == (h, w)


# ---- boxes ----
def test_box_outside_the_image_is_clipped(model):
    rgb, gt = scene()
    pred = model.predict(rgb, (-30.7, -8, 46.2, 41))
    assert pred.box == (0, 0, 47, 41)
    assert pred.coarse[:41, :47].all() and not pred.coarse[41:].any()
    assert iou(pred.mask, gt) > 0.9
    assert model.predict(rgb, np.array([10, 10, 1e6, 1e6])).box == (10, 10, W, H)


@pytest.mark.parametrize("box", [(10, 10, 10, 30), (30, 10, 20, 30), (10, 30, 20, 10), (200, 200, 300, 300),
                                 (-50, -50, -10, -10)])
def test_empty_inverted_or_outside_box_is_refused(model, box):
    with pytest.raises(BoxError):
        model.predict(scene()[0], box)


def test_box_must_be_four_numbers(model):
    with pytest.raises(BoxError, match="four numbers"):
        model.predict(scene()[0], (1, 2, 3))


# ---- the embedding is computed once per image ----
def test_new_boxes_on_the_same_image_reuse_the_embedding(model):
    rgb, _ = scene()
    seg = model.segmenter
    first = model.predict(rgb, OBJ)
    later = [model.predict(rgb.copy(), OBJ2), model.predict(rgb, (0, 0, 30, 30)), model.predict(None, OBJ)]
    assert seg.encoder_calls == 1  # equal content (a copy too) -> no new embedding
    assert first.timings["embed"] > 0 and all(p.timings["embed"] == 0 for p in later)
    assert set(first.timings) == {"embed", "prompt", "refine", "total"}
    other = rgb.copy()
    other[0, 0, 0] ^= 1  # one pixel differs -> new image
    model.predict(other, OBJ)
    assert seg.encoder_calls == 2


def test_predict_many_union_and_objects(model):
    rgb, gt = scene()
    many = model.predict_many(rgb, [OBJ, OBJ2])
    assert len(many.objects) == 2 and model.segmenter.encoder_calls == 1
    assert (many.mask == np.maximum(many.objects[0].mask, many.objects[1].mask)).all()
    assert iou(many.objects[0].mask, gt) > 0.9
    gt2 = np.zeros_like(gt)
    gt2[OBJ2[1]:OBJ2[3], OBJ2[0]:OBJ2[2]] = 255
    assert iou(many.objects[1].mask, gt2) > 0.9 and iou(many.mask, np.maximum(gt, gt2)) > 0.9
    with pytest.raises(BoxError):
        model.predict_many(rgb, [])


# ---- final mask: paper threshold vs the authors' min-max + Otsu ----
def test_final_mask_threshold_and_otsu():
    prob = np.full((10, 10), 20, np.uint8)
    prob[2:6, 2:6] = 90  # under-confident object: below 0.5 everywhere
    assert not final_mask(prob, "threshold").any()
    otsu = final_mask(prob, "otsu")
    assert otsu[2:6, 2:6].all() and otsu.sum() == 16 * 255
    assert not final_mask(np.full((4, 4), 77, np.uint8), "otsu").any()
    with pytest.raises(ValueError):
        final_mask(prob, "median")


def test_variant_switches_final_mask_and_inference_box():
    rgb, gt = scene()
    weak = DisSam(RedRefiner(gain=0.4), FilledBoxSegmenter(), size=64, device="cpu")
    assert not weak.predict(rgb, OBJ).mask.any()
    authors = DisSam(RedRefiner(gain=0.4), FilledBoxSegmenter(), size=64, device="cpu",
                     variant=Variant.authors_code())
    assert iou(authors.predict(rgb, OBJ).mask, gt) > 0.9


# ---- checkpoints (the real refiner and GrabCut stage 1) ----
def _save_checkpoint(path: Path, **extra) -> Path:
    from dissam.model import build_refiner
    from dissam.model.checkpoint import save_refiner

    torch.manual_seed(0)
    return save_refiner(build_refiner(in_ch=5, width=0.125), path, **extra)


def test_from_checkpoint_reads_size_and_switches(tmp_path):
    ckpt = _save_checkpoint(tmp_path / "r.pt", train_config={"size": 64, "use_box": False, "use_mask": True})
    model = DisSam.from_checkpoint(ckpt, coarse="grabcut")
    assert (model.size, model.use_box, model.use_mask, model.in_ch) == (64, False, True, 5)
    rgb, _ = scene()
    pred = model.predict(rgb, (10, 5, 55, 50))
    assert pred.mask.shape == (H, W) and model.segmenter.encoder_calls == 1
    assert pred.coarse[15:40, 20:45].mean() > 128  # GrabCut found the red square
    bare = DisSam.from_checkpoint(_save_checkpoint(tmp_path / "bare.pt"), coarse=FilledBoxSegmenter())
    assert bare.size == 192 and bare.use_box and bare.use_mask


def test_missing_checkpoint_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUNS_ROOT", tmp_path / "runs")
    image = tmp_path / "a.png"
    Image.fromarray(scene()[0]).save(image)
    with pytest.raises(CheckpointError) as err:
        run_predict(image, box=(0, 0, 10, 10))
    message = str(err.value)
    assert "\n" not in message and "make reproduce" in message
    assert "python -m dissam train --profile smoke" in message and "--checkpoint" in message
    with pytest.raises(CheckpointError, match="nope.pt"):
        DisSam.from_checkpoint(tmp_path / "nope.pt")


def test_run_predict_single_image_and_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "RUNS_ROOT", tmp_path / "runs")
    default = _save_checkpoint(config.get_profile("smoke").refiner_checkpoint, train_config={"size": 64})
    folder = tmp_path / "imgs"
    folder.mkdir()
    rgb, _ = scene()
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(rgb[:, ::-1]).save(folder / "b.jpg")
    out = run_predict(folder / "a.png", box=(10, 5, 55, 50), out=tmp_path / "one.png", coarse="grabcut")
    assert out.written == [tmp_path / "one.png"] and np.asarray(Image.open(out.written[0])).shape == (H, W)
    assert (out.predicted, out.failed) == (1, [])
    assert str(default) in capsys.readouterr().err
    csv = tmp_path / "boxes.csv"
    csv.write_text("image,x0,y0,x1,y1\na.png,10,5,55,50\nb,0,0,40,40\na.png,50,20,80,60\n")
    outs = run_predict(folder, boxes_csv=csv, checkpoint=default, out=tmp_path / "masks", coarse="grabcut").written
    assert [p.name for p in outs] == ["a_0.png", "b_0.png", "a_1.png"] and all(p.is_file() for p in outs)
    assert "checkpoint" not in capsys.readouterr().err  # an explicit checkpoint: nothing to announce
    outs = run_predict(folder / "b.jpg", boxes_csv=csv, checkpoint=default, out=tmp_path / "m.png",
                       coarse="grabcut").written
    assert [p.relative_to(tmp_path).as_posix() for p in outs] == ["m/b_0.png", "m/b_1.png", "m/b_2.png"]
    with pytest.raises(ValueError, match="--box is for one image"):
        run_predict(folder, box=(0, 0, 5, 5), checkpoint=default)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,x0,y0,x1,y1\na.png,1,1,5,5\n")
    with pytest.raises(ValueError, match="image"):
        run_predict(folder, boxes_csv=bad, checkpoint=default)


def test_stage1_on_a_shrunk_copy_maps_box_and_mask_back():
    rgb, gt = scene()
    seg = FilledBoxSegmenter()
    model = DisSam(RedRefiner(), seg, size=64, device="cpu", stage1_max_side=40)
    pred = model.predict(rgb, OBJ)
    assert seg.hw == (30, 40) and pred.coarse.shape == (H, W)  # stage 1 saw the image at half size
    box_mask = np.zeros((H, W), np.uint8)
    box_mask[OBJ[1]:OBJ[3], OBJ[0]:OBJ[2]] = 255
    assert iou(pred.coarse, box_mask) > 0.85 and iou(pred.mask, gt) > 0.9
    model.predict(rgb, OBJ2)
    assert seg.encoder_calls == 1
    odd = (21, 15, 45, 41)  # odd edges: the half-size box rounds outward, and its mask scales back wider
    x0, y0, x1, y1 = odd
    coarse = model.predict(rgb, odd).coarse > 127
    outside = coarse.copy()
    outside[y0:y1, x0:x1] = False
    assert coarse[y0:y1, x0:x1].all() and not outside.any()  # a box-bounded stage 1 stays in the box
