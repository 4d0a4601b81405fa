"""`dissam predict` as a user runs it: cut-outs (binary and soft alpha), outline + box overlays, folders
without a CSV (whole-image boxes), bad files and bad rows reported and skipped, exit status; and the pixel
functions of dissam.outputs. The model: an untrained tiny refiner (coarse prior on, so it returns about
the stage-1 mask, with soft edges) behind GrabCut, run end to end through ``main``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dissam import outputs
from dissam.cli import main
from dissam.data.images import read_image
from dissam.predictor import DisSam

H, W = 48, 64
SQUARE = (18, 12, 44, 36)  # x0, y0, x1, y1 of the red object


def scene() -> np.ndarray:
    """Textured green background, one red square: GrabCut finds it from the whole-image box."""
    rng = np.random.default_rng(0)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 1] = 90 + rng.integers(0, 40, (H, W))
    rgb[..., 2] = 30
    x0, y0, x1, y1 = SQUARE
    rgb[y0:y1, x0:x1] = (230, 40, 40)
    return rgb


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from dissam.model import build_refiner
    from dissam.model.checkpoint import save_refiner

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "refiner.pt"
    return save_refiner(build_refiner(in_ch=5, width=0.125, coarse_prior=4.0), path, train_config={"size": 64})


def mixed_folder(folder: Path) -> dict[str, np.ndarray]:
    """Good images of every kind (name -> the RGB they should read as) plus a corrupt and an empty file."""
    folder.mkdir()
    rgb = scene()
    expected = {"rgb.png": rgb, "rgba.png": rgb[::-1].copy(), "gray.png": None, "gray16.png": None,
                "palette.png": None}
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(np.dstack([rgb[::-1], np.full((H, W), 60, np.uint8)]), "RGBA").save(folder / "rgba.png")
    gray = rgb.max(axis=2)
    Image.fromarray(gray).save(folder / "gray.png")
    expected["gray.png"] = np.repeat(gray[..., None], 3, axis=2)
    wide = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 23 % 65536).astype(np.uint16)
    Image.fromarray(wide).save(folder / "gray16.png")
    assert Image.open(folder / "gray16.png").mode.startswith("I")  # really 16-bit on disk
    eight = np.round(wide / 257).astype(np.uint8)
    expected["gray16.png"] = np.repeat(eight[..., None], 3, axis=2)
    palette = Image.fromarray(rgb[:, ::-1].copy()).convert("P")
    palette.save(folder / "palette.png")
    expected["palette.png"] = np.asarray(palette.convert("RGB"))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all" * 4)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image: ignored")
    return expected


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def whole_image_prediction(checkpoint: Path, rgb: np.ndarray):
    model = DisSam.from_checkpoint(checkpoint)
    return model.predict(rgb, (0, 0, rgb.shape[1], rgb.shape[0]))


# ---- the folder of mixed images, without a CSV (the "done when") ----
def test_folder_without_csv_mixed_images(tmp_path, checkpoint, capsys):
    expected = mixed_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    code, stdout, err = run(["predict", str(tmp_path / "imgs"), "--checkpoint", str(checkpoint), "--profile",
                             "tiny", "-o", str(out), "--cutout", "--overlay"], capsys)
    assert code == 1
    assert "corrupt.jpg" in err and "empty.png" in err
    assert err.count("whole image as its box") == 1
    assert err.strip().splitlines()[-1] == "dissam predict: 5 written, 2 failed"
    names = sorted(p.name for p in out.iterdir())
    stems = sorted(Path(n).stem for n in expected)
    assert names == sorted(f"{s}_{kind}.png" for s in stems for kind in ("mask", "cutout", "overlay"))
    assert sorted(Path(line).name for line in stdout.split()) == names  # stdout lists what was written

    width = outputs.line_width(H, W)
    for name, rgb in expected.items():
        stem = Path(name).stem
        mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
        assert mask.shape == (H, W) and set(np.unique(mask)) <= {0, 255}
        cut = Image.open(out / f"{stem}_cutout.png")
        assert cut.mode == "RGBA" and cut.size == (W, H)
        cut = np.asarray(cut)
        assert (cut[..., :3] == rgb).all(), name  # the image as read, 8-bit
        assert (cut[..., 3] == mask).all(), name  # binary alpha = the mask
        over = np.asarray(Image.open(out / f"{stem}_overlay.png").convert("RGB"))
        line, frame = outputs.mask_outline(mask, width), outputs.box_edges((H, W), (0, 0, W, H), width)
        assert (over[~(line | frame)] == rgb[~(line | frame)]).all(), name  # untouched elsewhere
        assert (over[frame] == outputs.BOX_COLOUR).all()
        assert (over[line & ~frame] == outputs.OUTLINE_COLOUR).all()
    # the red square is found in the colour image, so its outline is really drawn there
    mask = np.asarray(Image.open(out / "rgb_mask.png"))
    assert mask[20:30, 25:38].all() and not mask[:5, :5].any()
    assert outputs.mask_outline(mask, width).sum() > 50


def test_soft_cutout_alpha_is_the_probability(tmp_path, checkpoint, capsys):
    image = tmp_path / "photo.png"
    rgb = scene()
    Image.fromarray(rgb).save(image)
    code, stdout, err = run(["predict", str(image), "--checkpoint", str(checkpoint), "--profile", "tiny",
                             "-o", str(tmp_path / "res" / "m.png"), "--cutout", "--soft"], capsys)
    assert code == 0 and "whole image as its box" in err
    assert stdout.split() == [str(tmp_path / "res" / "m.png"), str(tmp_path / "res" / "photo_cutout.png")]
    cut = np.asarray(Image.open(tmp_path / "res" / "photo_cutout.png"))
    pred = whole_image_prediction(checkpoint, rgb)
    assert (cut[..., :3] == rgb).all() and (cut[..., 3] == pred.prob).all()
    assert (pred.prob != pred.mask).mean() > 0.5  # so the alpha is the probability, not the binary mask
    assert (np.asarray(Image.open(tmp_path / "res" / "m.png")) == pred.mask).all()


def test_cutout_keeps_the_exif_rotation(tmp_path, checkpoint, capsys):
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: rotate 90 degrees clockwise to display
    Image.fromarray(scene()).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    code, _, _ = run(["predict", str(path), "--box", "10", "5", "50", "40", "--checkpoint", str(checkpoint),
                      "--profile", "tiny", "-o", str(tmp_path), "--cutout", "--overlay"], capsys)
    assert code == 0
    cut = np.asarray(Image.open(tmp_path / "turned_cutout.png"))
    assert cut.shape == (H, W, 4) and (cut[..., :3] == read_image(path)).all()
    over = np.asarray(Image.open(tmp_path / "turned_overlay.png"))
    assert (over[outputs.box_edges((H, W), (10, 5, 50, 40))] == outputs.BOX_COLOUR).all()


# ---- a CSV of boxes with bad rows ----
def test_csv_rows_outside_or_missing_are_reported_and_skipped(tmp_path, checkpoint, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(scene()).save(folder / "a.png")
    Image.fromarray(scene()[:, ::-1]).save(folder / "b.jpg")
    csv = tmp_path / "boxes.csv"
    csv.write_text("image,x0,y0,x1,y1\na.png,10,5,50,40\na.png,200,200,300,300\nghost.png,0,0,5,5\n"
                   "b,5,5,60,45\na,0,0,30,30\n")
    out = tmp_path / "masks"
    code, stdout, err = run(["predict", str(folder), "--boxes", str(csv), "--checkpoint", str(checkpoint),
                             "--profile", "tiny", "-o", str(out), "--overlay"], capsys)
    assert code == 1
    assert "boxes.csv line 3 (a.png)" in err and "outside" in err
    assert "boxes.csv line 4 (ghost.png)" in err and "not found" in err
    assert err.strip().splitlines()[-1] == "dissam predict: 3 written, 2 failed"
    # k counts the CSV rows of an image, so a failed row leaves its number unused
    assert sorted(p.name for p in out.iterdir()) == ["a_0.png", "a_0_overlay.png", "a_2.png", "a_2_overlay.png",
                                                     "b_0.png", "b_0_overlay.png"]
    assert "whole image" not in err


# ---- naming and usage errors ----
def test_shared_stems_get_their_extension(tmp_path, checkpoint, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(scene()).save(folder / "a.png")
    Image.fromarray(scene()).save(folder / "a.bmp")
    Image.fromarray(scene()).save(folder / "b.png")
    code, _, _ = run(["predict", str(folder), "--checkpoint", str(checkpoint), "--profile", "tiny", "-o",
                      str(tmp_path / "o.png")], capsys)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_bmp_mask.png", "a_png_mask.png", "b_mask.png"]


@pytest.mark.parametrize("extra, message", [
    (["--soft"], "--soft"),
    (["--box", "0", "0", "5", "5"], "--box is for one image"),
    (["--boxes", "nope.csv"], "boxes CSV not found"),
])
def test_usage_errors_exit_2(tmp_path, checkpoint, capsys, extra, message):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(scene()).save(tmp_path / "imgs" / "a.png")
    code, _, err = run(["predict", str(tmp_path / "imgs"), "--checkpoint", str(checkpoint), *extra], capsys)
    assert code == 2 and message in err and not (tmp_path / "mask").exists()


def test_folder_without_images_is_an_error(tmp_path, checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["predict", str(tmp_path / "empty"), "--checkpoint", str(checkpoint)], capsys)
    assert code == 2 and "no images" in err


def test_single_bad_image_is_an_error(tmp_path, checkpoint, capsys):
    (tmp_path / "x.png").write_bytes(b"")
    code, _, err = run(["predict", str(tmp_path / "x.png"), "--checkpoint", str(checkpoint)], capsys)
    assert code == 2 and "x.png" in err


# ---- the pixel functions ----
def test_mask_outline_and_box_edges_are_exact():
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 8:20] = 255
    ring = outputs.mask_outline(mask)
    inner = np.zeros_like(ring)
    inner[6:14, 9:19] = True
    assert (ring == ((mask > 127) & ~inner)).all()
    thick = outputs.mask_outline(mask, 2)
    inner[:] = False
    inner[7:13, 10:18] = True
    assert (thick == ((mask > 127) & ~inner)).all()
    edge = np.zeros((6, 6), np.uint8)
    edge[:, :3] = 255  # touches the frame: no line along the image border
    assert (outputs.mask_outline(edge) == (np.arange(6) == 2)[None].repeat(6, 0)).all()
    frame = outputs.box_edges((20, 30), (2, 3, 10, 8))
    expected = np.zeros((20, 30), bool)
    expected[3:8, 2:10] = True
    expected[4:7, 3:9] = False
    assert (frame == expected).all()
    assert outputs.box_edges((20, 30), (-5, -5, 100, 100)).sum() == 2 * 30 + 2 * 18  # clipped: the image frame
    assert outputs.box_edges((20, 30), (2, 3, 4, 40), width=5)[3:, 2:4].all()  # thinner than the lines: filled


def test_outline_overlay_changes_only_outline_and_box():
    rgb = scene()
    mask = np.zeros((H, W), np.uint8)
    x0, y0, x1, y1 = SQUARE
    mask[y0:y1, x0:x1] = 255
    over = outputs.outline_overlay(rgb, mask, (5, 4, 60, 46), width=2)
    changed = (over != rgb).any(axis=2)
    line, frame = outputs.mask_outline(mask, 2), outputs.box_edges((H, W), (5, 4, 60, 46), 2)
    assert (changed == (line | frame)).all()  # the scene has neither colour, so every painted pixel changes
    assert (rgb == scene()).all()  # input untouched
    assert (outputs.outline_overlay(rgb, None) == rgb).all()


def test_cutout_and_line_width():
    rgb, alpha = scene(), np.arange(H * W).reshape(H, W) % 256
    cut = outputs.cutout(rgb, alpha)
    assert cut.shape == (H, W, 4) and cut.dtype == np.uint8
    assert (cut[..., :3] == rgb).all() and (cut[..., 3] == alpha).all()
    with pytest.raises(ValueError, match="HxW alpha"):
        outputs.cutout(rgb, alpha[:, :-1])
    assert (outputs.line_width(48, 64), outputs.line_width(1080, 1920), outputs.line_width(4000, 6000)) == (1, 6, 20)


def test_progress_bar_over_the_folder(tmp_path, checkpoint, capsys):
    from dissam.predict_files import run_predict

    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(scene()).save(tmp_path / "imgs" / name)
    model = DisSam.from_checkpoint(checkpoint)
    result = run_predict(tmp_path / "imgs", model=model, out=tmp_path / "o", progress=True)
    assert (result.predicted, result.failed, len(result.written)) == (3, [], 3)
    err = capsys.readouterr().err
    assert "dissam predict: 100%" in err and "3/3" in err
    run_predict(tmp_path / "imgs", model=model, out=tmp_path / "o", progress=False)
    assert "%" not in capsys.readouterr().err


def test_refine_region_box_refines_a_crop_around_the_box(tmp_path, checkpoint, capsys):
    """--refine-region box: the mask the library gives in box mode, nothing outside the crop window."""
    from dissam.data.prompts import crop_window

    big = np.zeros((4 * H, 4 * W, 3), np.uint8)
    big[..., 1] = 100
    big[:H, :W] = scene()  # the object in the top-left corner of a large image
    Image.fromarray(big).save(tmp_path / "big.png")
    box = (14, 8, 48, 40)
    code, _, _ = run(["predict", str(tmp_path / "big.png"), "--checkpoint", str(checkpoint), "--profile", "tiny",
                      "--box", *map(str, box), "--refine-region", "box", "-o", str(tmp_path / "m.png")], capsys)
    assert code == 0
    mask = np.asarray(Image.open(tmp_path / "m.png"))
    model = DisSam.from_checkpoint(checkpoint, refine_region="box")
    assert np.array_equal(mask, model.predict(big, box).mask)
    y0, y1, x0, x1 = crop_window(box, *big.shape[:2], model.crop_margin, min_side=model.size)
    outside = np.ones(mask.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert outside.any() and not mask[outside].any()
