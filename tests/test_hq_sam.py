"""HQ-SAM through the real segment_anything_hq path, on a tiny randomly initialised HQ-SAM (no weights needed)."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dissam.coarse import build_coarse
from dissam.coarse.hq import HQ_INSTALL, import_hq
from dissam.coarse.sam import MODEL_REGISTRY, SamSegmenter
from dissam.repro.config import get_profile
from dissam.variant import Variant
from dissam.repro.stages import build_stage1
from helpers import SAM_BOX as BOX, sam_test_image

pytestmark = pytest.mark.skipif(importlib.util.find_spec("segment_anything_hq") is None,
                                reason="segment_anything_hq is not installed (pip install 'dissam[hq]')")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return sam_test_image()


@pytest.fixture(scope="module")
def tiny_hq_ckpt(tmp_path_factory) -> Path:
    from dissam.coarse.tiny_hq_sam import build_tiny_hq_sam
    path = tmp_path_factory.mktemp("ckpt") / "tiny_hq_sam.pth"
    torch.save(build_tiny_hq_sam(seed=0).state_dict(), path)
    return path


def _reference(image: np.ndarray, multimask: bool, hq_token_only: bool) -> tuple[np.ndarray, float]:
    """segment_anything_hq's own SamPredictor on a freshly built tiny HQ-SAM (seed 0): logits and score."""
    from dissam.coarse.tiny_hq_sam import build_tiny_hq_sam
    ref = import_hq().SamPredictor(build_tiny_hq_sam(seed=0))
    ref.set_image(image)
    logits, scores, _ = ref.predict(box=np.array(BOX, float), multimask_output=multimask, return_logits=True,
                                    hq_token_only=hq_token_only)
    assert logits.shape[0] == 1  # HQ-SAM's decoder returns one mask even when asked for several
    return logits[0], float(scores[0])


def test_segment_anything_and_hq_share_one_environment():
    import segment_anything
    from segment_anything.modeling import Sam as MetaSam

    from dissam.coarse.tiny_hq_sam import build_tiny_hq_sam
    from dissam.coarse.tiny_sam import build_tiny_sam
    segment_anything_hq = import_hq()  # dissam's import: timm's notices about the package are silenced
    assert Path(segment_anything.__file__).parent != Path(segment_anything_hq.__file__).parent
    sam, hq = build_tiny_sam(0), build_tiny_hq_sam(0)
    assert isinstance(sam, MetaSam) and not isinstance(hq, MetaSam)
    assert isinstance(hq, segment_anything_hq.modeling.Sam)
    assert "mask_decoder.hf_token.weight" in hq.state_dict() and "mask_decoder.hf_token.weight" not in sam.state_dict()
    assert "tiny" in MODEL_REGISTRY["hq-sam"] and "tiny" in MODEL_REGISTRY["sam"]


def test_tiny_hq_sam_is_deterministic_and_leaves_global_rng_alone():
    from dissam.coarse.tiny_hq_sam import build_tiny_hq_sam
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a, b, c = build_tiny_hq_sam(0), build_tiny_hq_sam(0), build_tiny_hq_sam(1)
    assert torch.equal(torch.rand(3), expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_tiny_hq_sam(prompt_dim=20)


@pytest.mark.parametrize("multimask,hq_token_only", [(False, False), (False, True), (True, False)])
def test_wrapper_equals_hq_sam_predictor(image, multimask, hq_token_only):
    from dissam.coarse.tiny_hq_sam import build_tiny_hq_sam
    seg = build_coarse("hq-sam", model=build_tiny_hq_sam(seed=0), multimask=multimask,
                       hq_token_only=hq_token_only, device="cpu")
    seg.set_image(image)
    result = seg.predict(BOX)
    logits, score = _reference(image, multimask, hq_token_only)
    np.testing.assert_allclose(result.logits, logits, atol=1e-5)
    assert result.score == pytest.approx(score, abs=1e-6)
    assert result.mask.dtype == np.uint8 and result.mask.shape == image.shape[:2]
    assert np.array_equal(result.mask, np.where(result.logits > 0, 255, 0).astype(np.uint8))


def test_hq_token_only_changes_the_mask(image):
    """The option reaches the decoder: the HQ token's mask alone differs from SAM's plus the HQ token's."""
    summed, _ = _reference(image, False, False)
    alone, _ = _reference(image, False, True)
    assert np.abs(summed - alone).max() > 1e-3


@pytest.mark.parametrize("variant", [Variant.paper(), Variant.authors_code()], ids=["paper", "authors_code"])
def test_checkpoint_round_trip_through_build_stage1(image, tiny_hq_ckpt, variant):
    """The HQ-SAM baseline's loader (build_stage1, kind 'hq-sam') on a saved tiny HQ-SAM gives what
    segment_anything_hq's SamPredictor gives on the same weights (box, one mask, HQ + SAM): under either
    variant, since HQ-SAM is prompted as its own code prompts boxes (the authors' multimask is SAM's)."""
    from dissam.coarse.tiny_hq_sam import build_tiny_hq_sam
    profile = get_profile("tiny", variant=replace(variant, sam_model_type="tiny"))
    seg = build_stage1(profile, device="cpu", kind="hq-sam", checkpoint=tiny_hq_ckpt)
    assert isinstance(seg, SamSegmenter) and seg.family == "hq-sam" and seg.model_type == "tiny"
    assert not seg.multimask and not seg.hq_token_only
    seg.set_image(image)
    result = seg.predict(BOX)
    logits, score = _reference(image, False, False)
    np.testing.assert_allclose(result.logits, logits, atol=1e-5)
    assert result.score == pytest.approx(score, abs=1e-6)
    assert np.array_equal(result.mask, np.where(logits > 0, 255, 0).astype(np.uint8))
    # the same weights built in memory share the key; the SAM kind never does
    from_module = build_coarse("hq-sam", model=build_tiny_hq_sam(seed=0))
    assert from_module.key == seg.key
    assert build_coarse("hq-sam", model=build_tiny_hq_sam(seed=0), hq_token_only=True).key != seg.key
    assert build_coarse("hq-sam", model=build_tiny_hq_sam(seed=0), multimask=True).key != seg.key


def test_plain_sam_checkpoint_is_refused_as_hq(tmp_path):
    from dissam.coarse.tiny_sam import build_tiny_sam
    path = tmp_path / "tiny_sam.pth"
    torch.save(build_tiny_sam(seed=0).state_dict(), path)
    with pytest.raises(ValueError, match="not a tiny HQ-SAM state dict"):
        build_coarse("hq-sam", checkpoint=path, model_type="tiny")


def test_hq_checkpoint_into_a_plain_sam_is_refused(tiny_hq_ckpt):
    with pytest.raises(ValueError, match="does not fit sam model type 'tiny'"):
        build_coarse("sam", checkpoint=tiny_hq_ckpt, model_type="tiny")


def test_missing_package_says_how_to_install(monkeypatch, tiny_hq_ckpt):
    """With segment_anything_hq not importable, every HQ-SAM entry point raises the HQ_INSTALL message."""
    from dissam.coarse.tiny_hq_sam import build_tiny_hq_sam
    from dissam.coarse.tiny_sam import build_tiny_sam
    model = build_tiny_hq_sam(seed=0)
    monkeypatch.setitem(sys.modules, "segment_anything_hq", None)  # `import segment_anything_hq` now fails
    for attempt in (lambda: build_coarse("hq-sam", checkpoint=tiny_hq_ckpt, model_type="tiny"),
                    lambda: build_coarse("hq-sam", model=model, device="cpu"),
                    lambda: build_tiny_hq_sam(seed=0)):
        with pytest.raises(ImportError) as err:
            attempt()
        assert str(err.value) == HQ_INSTALL
        assert "pip install 'dissam[hq]'" in str(err.value) and "github.com/SysCV/sam-hq" in str(err.value)
    build_coarse("sam", model=build_tiny_sam(seed=0), device="cpu")  # plain SAM does not need it
