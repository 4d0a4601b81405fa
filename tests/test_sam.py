"""SAM through the real segment_anything path, on a tiny randomly initialised SAM (no weights needed)."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from dissam.coarse import build_coarse
from dissam.coarse.sam import MODEL_REGISTRY, SamSegmenter, load_sam_state_dict
from dissam.coarse.tiny_sam import build_tiny_sam
from dissam.data.prompts import BoxError
from helpers import SAM_BOX as BOX, sam_test_image


class Payload:
    """Any pickled object other than tensors and containers: weights_only loading must refuse it."""


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return sam_test_image()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save(build_tiny_sam(seed=0).state_dict(), path)
    return str(path)


def test_tiny_sam_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a, b, c = build_tiny_sam(0), build_tiny_sam(0), build_tiny_sam(1)
    assert torch.equal(torch.rand(3), expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.image_encoder.img_size == 64 and "tiny" in MODEL_REGISTRY["sam"]


@pytest.mark.parametrize("multimask", [False, True])
def test_wrapper_equals_sam_predictor(image, multimask):
    sam = build_tiny_sam(seed=0)
    seg = build_coarse("sam", model=sam, multimask=multimask, device="cpu")
    seg.set_image(image)
    result = seg.predict(BOX)
    ref = SamPredictor(build_tiny_sam(seed=0))
    ref.set_image(image)
    logits, scores, _ = ref.predict(box=np.array(BOX, float), multimask_output=multimask, return_logits=True)
    assert logits.shape[0] == (3 if multimask else 1)
    # paper: the single mask; authors' code: masks[0] of the multimask output (not the best-scored one)
    np.testing.assert_allclose(result.logits, logits[0], atol=1e-5)
    assert result.score == pytest.approx(float(scores[0]), abs=1e-6)
    assert result.mask.dtype == np.uint8 and result.mask.shape == image.shape[:2]
    assert result.logits.dtype == np.float32
    assert np.array_equal(result.mask, np.where(result.logits > 0, 255, 0).astype(np.uint8))


def test_embedding_once_per_image_not_per_box(image):
    seg = build_coarse("sam", model=build_tiny_sam(), device="cpu")
    calls = []
    seg.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    seg.set_image(image)
    masks = [seg.predict(b).mask for b in [(0, 0, 50, 50), (10, 10, 190, 110), BOX, (-20, -20, 60, 300)]]
    assert len(calls) == 1 and seg.encoder_calls == 1
    assert all(m.shape == image.shape[:2] for m in masks)
    seg.set_image(image[:, ::-1])
    assert len(calls) == 2 and seg.encoder_calls == 2
    with pytest.raises(BoxError):
        seg.predict((30, 30, 30, 80))


def test_checkpoint_round_trip_through_build_coarse(image, tiny_ckpt):
    from_file = build_coarse("sam", checkpoint=tiny_ckpt, model_type="tiny", device="cpu")
    from_module = build_coarse("sam", model=build_tiny_sam(seed=0), device="cpu")
    assert isinstance(from_file, SamSegmenter)
    from_file.set_image(image)
    from_module.set_image(image)
    assert np.array_equal(from_file.predict(BOX).mask, from_module.predict(BOX).mask)
    # same weights, same settings: same key, however the model was built; otherwise a different key
    assert from_file.key == from_module.key
    assert build_coarse("sam", model=build_tiny_sam(seed=1)).key != from_module.key
    assert build_coarse("sam", checkpoint=tiny_ckpt, model_type="tiny", multimask=True).key != from_file.key
    assert build_coarse("sam", model=build_tiny_sam(img_size=96)).key != from_module.key


def test_checkpoint_loading_is_weights_only(tmp_path, tiny_ckpt):
    bad = tmp_path / "pickled.pth"
    torch.save({"model": build_tiny_sam().state_dict(), "extra": Payload()}, bad)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        build_coarse("sam", checkpoint=bad, model_type="tiny")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": torch.load(tiny_ckpt, weights_only=True)}, wrapped)
    assert load_sam_state_dict(wrapped).keys() == load_sam_state_dict(tiny_ckpt).keys()


def test_missing_checkpoint_names_file_and_source(tmp_path):
    missing = tmp_path / "nowhere" / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError) as err:
        build_coarse("sam", checkpoint=missing, model_type="vit_b")
    text = str(err.value)
    assert str(missing) in text and "sam_vit_b_01ec64.pth" in text
    assert "github.com/facebookresearch/segment-anything" in text and "grabcut" in text
    with pytest.raises(FileNotFoundError, match="sam_vit_l_0b3195.pth"):
        build_coarse("sam", checkpoint=tmp_path / "x.pth", model_type="vit_l")
    with pytest.raises(FileNotFoundError, match="github.com/SysCV/sam-hq") as err:
        build_coarse("hq-sam", checkpoint=tmp_path / "sam_hq_vit_b.pth", model_type="vit_b")
    assert "sam_hq_vit_b.pth" in str(err.value)
    with pytest.raises(ValueError, match="not configured"):
        build_coarse("sam")
    with pytest.raises(ValueError, match="unknown sam model type"):
        build_coarse("sam", checkpoint=tmp_path / "x.pth", model_type="vit_q")


def test_wrong_model_type_for_checkpoint(tiny_ckpt):
    with pytest.raises(ValueError, match="does not fit sam model type 'vit_b'"):
        build_coarse("sam", checkpoint=tiny_ckpt, model_type="vit_b")
