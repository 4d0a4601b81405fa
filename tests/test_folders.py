"""Reading im/gt folders: every common image flavour as uint8 RGB, and errors that name the file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dissam.data import splits
from dissam.data.images import DataError, read_image, read_mask
from dissam.data.folders import list_pairs
from dissam.data.images import to_uint8


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def test_rgb_png(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)


def test_rgba_drops_alpha(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)


def test_grayscale_is_repeated(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (6, 8, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))


def _nearest_8bit(a: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit by the nearest value, round(a / 257): 65535 -> 255 and 257 k -> k exactly."""
    return np.round(a.astype(np.float64) / 257).astype(np.uint8)


def test_16bit_is_scaled_to_8bit(tmp_path):
    a = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300)
    Image.fromarray(a).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint8 and np.array_equal(out[..., 1], _nearest_8bit(a))
    assert np.array_equal(read_mask(tmp_path / "d.png"), _nearest_8bit(a))


def test_16bit_converts_the_same_everywhere(tmp_path):
    """One converter (dissam.data.images.to_uint8): a 16-bit image gives the same uint8 pixels read from
    a file (image or mask), given as a path, a PIL image, a uint16 array or PIL's int32 array."""
    from dissam.data.images import as_rgb

    a = np.array([[0, 128, 129, 257, 384, 385], [32767, 32896, 65407, 65408, 65534, 65535]], np.uint16)
    expected = _nearest_8bit(a)
    assert expected.tolist()[0] == [0, 0, 1, 1, 1, 1] and expected.tolist()[1][-2:] == [255, 255]
    path = tmp_path / "w.png"
    Image.fromarray(a).save(path)
    with Image.open(path) as img:
        pil = img.copy()
    gray_views = [read_mask(path), to_uint8(a), to_uint8(a.astype(np.int32)), to_uint8(np.asarray(pil))]
    rgb_views = [read_image(path), as_rgb(path), as_rgb(pil), as_rgb(a), as_rgb(a.astype(np.int32)),
                 as_rgb(np.dstack([a] * 3))]
    for view in gray_views + [v[..., c] for v in rgb_views for c in range(3)]:
        assert view.dtype == np.uint8 and np.array_equal(view, expected)


def test_split_names_are_the_data_sets_folder_names():
    """Every module takes split names from dissam.data.splits; here they are pinned to DIS5K's folders."""
    assert splits.DIS5K_SPLITS == ("DIS-TR", "DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
    assert (splits.TRAIN_SPLIT, splits.VAL_SPLIT, splits.TEST_SPLITS) == ("DIS-TR", "DIS-VD", splits.DIS5K_SPLITS[2:])
    assert splits.ZERO_SHOT_SETS == ("COIFT", "HRSOD", "ThinObject5K-TE")
    assert (splits.TE_ALL, splits.ZERO_SHOT_ALL) == ("DIS-TE(ALL)", "ALL")


def test_palette_is_expanded(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert np.array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; red block at the left
    img[:, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)  # displayed upright: 20 wide, 40 high
    assert out[:10, :, 0].mean() > 200 and out[-10:, :, 0].mean() < 50  # red on top after the rotation


def test_dataset_jpeg_with_exif_orientation_stays_aligned_with_its_gt(tmp_path):
    """Data sets are read in stored pixel order (as IS-Net's loader): the GT was drawn on it, not on the
    EXIF-turned view, so an orientation tag must neither make the pair a size mismatch nor misalign it."""
    for sub in ("im", "gt"):
        (tmp_path / sub).mkdir()
    img = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; the object is a red block at the left
    img[:, :10] = (255, 0, 0)
    gt = np.zeros((20, 40), np.uint8)
    gt[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "im" / "a.jpg", exif=exif, quality=95)
    Image.fromarray(gt).save(tmp_path / "gt" / "a.png")
    image, mask = list_pairs(tmp_path)[0].load()
    assert image.shape == (20, 40, 3) and mask.shape == (20, 40)
    red = (image[..., 0] > 200) & (image[..., 1] < 50)
    assert np.array_equal(red, mask > 127)


def test_masks_binary_and_01(tmp_path):
    m = np.zeros((5, 5), np.uint8)
    m[1:3, 1:4] = 1
    Image.fromarray(m, "L").save(tmp_path / "m01.png")
    assert set(np.unique(read_mask(tmp_path / "m01.png"))) == {0, 255}
    Image.fromarray(m.astype(bool)).save(tmp_path / "m1.png")
    assert np.array_equal(read_mask(tmp_path / "m1.png") > 127, m > 0)
    Image.fromarray(np.dstack([m * 255] * 3)).save(tmp_path / "mrgb.png")
    assert np.array_equal(read_mask(tmp_path / "mrgb.png"), m * 255)


def _folder(tmp_path, stems, gt_stems, size=(8, 6)):
    for sub in ("im", "gt"):
        (tmp_path / sub).mkdir(exist_ok=True)
    for s in stems:
        Image.new("RGB", size, (10, 20, 30)).save(tmp_path / "im" / f"{s}.jpg")
    for s in gt_stems:
        Image.new("L", size, 255).save(tmp_path / "gt" / f"{s}.png")
    return tmp_path


def test_list_pairs_sorted_by_stem(tmp_path):
    pairs = list_pairs(_folder(tmp_path, ["b", "a", "c"], ["a", "b", "c"]))
    assert [p.stem for p in pairs] == ["a", "b", "c"]
    image, gt = pairs[0].load()
    assert image.shape == (6, 8, 3) and gt.shape == (6, 8)


def test_missing_gt_names_the_file(tmp_path):
    folder = _folder(tmp_path, ["a", "b"], ["a"])
    with pytest.raises(DataError, match=r"gt[/\\]b\.png"):
        list_pairs(folder)
    assert len(list_pairs(folder, require_gt=False)) == 2


def test_unreadable_and_missing_files_are_named(tmp_path):
    folder = _folder(tmp_path, ["a"], ["a"])
    (folder / "gt" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"unreadable image .*a\.png"):
        list_pairs(folder)[0].load()
    with pytest.raises(DataError, match=r"missing file: .*nope\.png"):
        read_image(tmp_path / "nope.png")


def test_size_mismatch_names_both_files(tmp_path):
    folder = _folder(tmp_path, ["a"], [])
    Image.new("L", (5, 5), 255).save(folder / "gt" / "a.png")
    with pytest.raises(DataError, match=r"size mismatch .*im[/\\]a\.jpg.*gt[/\\]a\.png"):
        list_pairs(folder)[0].load()


def test_not_a_dis_folder(tmp_path):
    with pytest.raises(DataError, match="expected <split>/im"):
        list_pairs(tmp_path)
    (tmp_path / "im").mkdir()
    with pytest.raises(DataError, match="no images"):
        list_pairs(tmp_path)
