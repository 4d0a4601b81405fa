"""Choosing the refiner's inference path per machine (injected timings, no real timing asserted), the CPU
identity it is keyed by, and the bounded stage-1 size of the predictor."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dissam import cpuinfo
from dissam.cli import build_parser
from dissam.coarse.grabcut import GrabCutSegmenter
from dissam.model import build_refiner
from dissam.model import path_choice
from dissam.model.inference import FusedConv2d, predict_prob
from dissam.model.path_choice import build_path, choose_inference_path, choose_path, path_key
from dissam.predictor import DEFAULT_STAGE1_MAX_SIDE, DisSam, default_stage1_max_side, resolve_stage1_max_side

W, S = 0.125, 32


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch):
    """Each test starts with an empty in-process cache of choices."""
    monkeypatch.setattr(path_choice, "_CHOICES", {})


class FakeTimer:
    """Stands in for time_paths: returns fixed seconds, counts calls, never runs the candidates."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings, self.calls = timings, 0

    def __call__(self, candidates):
        self.calls += 1
        assert set(candidates) == set(self.timings)
        return dict(self.timings)


def _refiner(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_refiner(5, W).eval()


# ---- the pure rule
def test_choose_path_picks_the_fastest():
    assert choose_path({"eager": 1.0, "optimised": 0.4}) == "optimised"
    assert choose_path({"eager": 0.4, "optimised": 1.0}) == "eager"
    assert choose_path({"eager": 1.0, "optimised": 0.7, "other": 0.2}) == "other"


def test_near_ties_keep_eager():
    assert choose_path({"eager": 1.0, "optimised": 0.95}) == "eager"  # 5% faster: within the 10% margin
    assert choose_path({"eager": 1.0, "optimised": 0.9}) == "eager"  # exactly at the margin: still eager
    assert choose_path({"eager": 1.0, "optimised": 0.89}) == "optimised"
    assert choose_path({"eager": 1.0, "optimised": 0.95}, margin=0.0) == "optimised"
    assert choose_path({"optimised": 0.95}) == "optimised"  # no eager timed: the fastest


@pytest.mark.parametrize("timings, margin", [({}, 0.1), ({"eager": float("nan")}, 0.1),
                                             ({"eager": -1.0}, 0.1), ({"eager": 1.0}, 1.5)])
def test_choose_path_refuses_bad_input(timings, margin):
    with pytest.raises(ValueError):
        choose_path(timings, margin)


# ---- the cache around the timing
def test_cache_hit_skips_timing_in_memory_and_on_disk(tmp_path, monkeypatch):
    cache = tmp_path / "paths.json"
    timer = FakeTimer({"eager": 1.0, "optimised": 0.3})
    module, choice = choose_inference_path(_refiner(), S, cache_file=cache, timer=timer)
    assert choice["path"] == "optimised" and choice["source"] == "timed" and timer.calls == 1
    assert any(isinstance(m, FusedConv2d) for m in module.modules()) or not torch.backends.mkldnn.is_available()
    stored = json.loads(cache.read_text())
    assert stored[choice["key"]] == {"path": "optimised", "timings": {"eager": 1.0, "optimised": 0.3}}

    _, again = choose_inference_path(_refiner(1), S, cache_file=cache, timer=timer)  # other weights, same key
    assert again["source"] == "memory" and again["path"] == "optimised" and timer.calls == 1

    monkeypatch.setattr(path_choice, "_CHOICES", {})  # a new process: only the file remains
    _, later = choose_inference_path(_refiner(), S, cache_file=cache, timer=timer)
    assert later["source"] == "disk" and later["path"] == "optimised" and timer.calls == 1


def test_no_cache_file_times_once_per_process(tmp_path):
    timer = FakeTimer({"eager": 0.2, "optimised": 0.3})
    module, choice = choose_inference_path(_refiner(), S, cache_file=None, timer=timer)
    assert choice["path"] == "eager" and module is not None and timer.calls == 1
    assert choose_inference_path(_refiner(), S, cache_file=None, timer=timer)[1]["source"] == "memory"
    assert not list(tmp_path.iterdir())


def test_cache_key_changes_with_size_cpu_threads_and_network():
    model = _refiner()
    key = path_key(model, 64, threads=2, cpu="CPU A [avx2]")
    assert key == path_key(_refiner(3), 64, threads=2, cpu="CPU A [avx2]")  # weights do not matter
    others = [path_key(model, 128, threads=2, cpu="CPU A [avx2]"),
              path_key(model, 64, threads=2, cpu="CPU A [avx2,avx512f]"),
              path_key(model, 64, threads=1, cpu="CPU A [avx2]"),
              path_key(build_refiner(5, 0.25), 64, threads=2, cpu="CPU A [avx2]"),
              path_key(build_refiner(3, W), 64, threads=2, cpu="CPU A [avx2]")]
    assert len({key, *others}) == 6
    assert json.loads(key)["torch"] == torch.__version__


def test_a_new_size_is_timed_again(tmp_path):
    timer = FakeTimer({"eager": 1.0, "optimised": 0.3})
    choose_inference_path(_refiner(), S, cache_file=tmp_path / "c.json", timer=timer)
    _, choice = choose_inference_path(_refiner(), 2 * S, cache_file=tmp_path / "c.json", timer=timer)
    assert choice["source"] == "timed" and timer.calls == 2
    assert len(json.loads((tmp_path / "c.json").read_text())) == 2


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "", json.dumps({"k": "optimised"})])
def test_corrupt_cache_file_is_ignored_and_replaced(tmp_path, content):
    cache = tmp_path / "c.json"
    cache.write_text(content)
    timer = FakeTimer({"eager": 1.0, "optimised": 0.3})
    _, choice = choose_inference_path(_refiner(), S, cache_file=cache, timer=timer)
    assert choice["source"] == "timed" and timer.calls == 1
    assert json.loads(cache.read_text())[choice["key"]]["path"] == "optimised"


def test_an_unknown_path_in_the_cache_is_ignored(tmp_path):
    cache = tmp_path / "c.json"
    key = path_key(_refiner(), S)
    cache.write_text(json.dumps({key: {"path": "bf16", "timings": {}}}))
    timer = FakeTimer({"eager": 0.2, "optimised": 0.3})
    assert choose_inference_path(_refiner(), S, cache_file=cache, timer=timer)[1]["source"] == "timed"


@pytest.mark.parametrize("winner", ["eager", "optimised"])
def test_either_chosen_path_equals_eager(winner, tmp_path):
    model = _refiner()
    with torch.no_grad():
        for m in model.modules():  # non-trivial BatchNorm statistics, so folding matters
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 5, S, S)
    with torch.inference_mode():
        ref = model(x)[0][0]
    timings = {"eager": 1.0, "optimised": 2.0} if winner == "eager" else {"eager": 2.0, "optimised": 1.0}
    module, choice = choose_inference_path(model, S, cache_file=None, timer=FakeTimer(timings))
    assert choice["path"] == winner
    assert (predict_prob(module, x) - ref).abs().max().item() <= 1e-4
    with pytest.raises(ValueError, match="inference path"):
        build_path(model, "bf16")


def test_time_paths_runs_each_candidate_and_returns_medians():
    calls = {"a": 0, "b": 0}

    def make(k):
        return lambda: calls.__setitem__(k, calls[k] + 1)
    out = path_choice.time_paths({"a": make("a"), "b": make("b")}, repeats=3)
    assert calls == {"a": 4, "b": 4} and set(out) == {"a", "b"} and all(v >= 0 for v in out.values())


# ---- the CPU identity
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma

processor\t: 1
model name\t: something else
"""


def test_cpuinfo_parses_first_processor():
    info = cpuinfo.parse_cpuinfo(CPUINFO)
    assert info["model name"] == "AMD EPYC 7B13"
    assert cpuinfo.cpu_model(info) == "AMD EPYC 7B13 (family 25 model 1)"
    assert cpuinfo.cpu_flags(info) == {"avx2": True, "avx512f": False, "amx_tile": False}
    assert cpuinfo.cpu_id(info) == "AMD EPYC 7B13 (family 25 model 1) [avx2]"
    assert cpuinfo.cpu_flags({}) == {"avx2": False, "avx512f": False, "amx_tile": False}
    line = cpuinfo.cpu_line(threads=3)
    assert line.startswith("CPU: ") and "avx512f" in line and "3 threads" in line


# ---- the bounded stage 1 of the predictor
class SizeSeg:
    """A stage 1 that records the size it was shown and answers the box, filled."""

    def __init__(self) -> None:
        self.hw, self.encoder_calls = None, 0

    def set_image(self, rgb):
        self.hw, self.encoder_calls = rgb.shape[:2], self.encoder_calls + 1

    def predict(self, box):
        from types import SimpleNamespace
        mask = np.zeros(self.hw, np.uint8)
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[y0:y1, x0:x1] = 255
        return SimpleNamespace(mask=mask)


def test_stage1_default_bound_per_kind():
    assert default_stage1_max_side(GrabCutSegmenter()) == DEFAULT_STAGE1_MAX_SIDE
    assert default_stage1_max_side(SizeSeg()) is None  # SAM and others: full size
    assert resolve_stage1_max_side("auto", GrabCutSegmenter()) == DEFAULT_STAGE1_MAX_SIDE
    assert resolve_stage1_max_side(0, GrabCutSegmenter()) is None
    assert resolve_stage1_max_side(None, GrabCutSegmenter()) is None
    assert resolve_stage1_max_side(300, SizeSeg()) == 300
    for bad in (-1, 2.5, "big", True):
        with pytest.raises(ValueError, match="stage1_max_side"):
            resolve_stage1_max_side(bad, SizeSeg())


def test_predictor_bounds_stage1_and_rebounds_on_change():
    seg = SizeSeg()
    model = DisSam(_refiner(), seg, size=S, device="cpu", stage1_max_side=50, inference_path="eager")
    rgb = np.random.default_rng(0).integers(0, 255, (100, 80, 3), dtype=np.uint8)
    pred = model.predict(rgb, (10, 20, 60, 90))
    assert seg.hw == (50, 40) and pred.coarse.shape == (100, 80) and pred.mask.shape == (100, 80)
    model.predict(rgb, (5, 5, 40, 40))
    assert seg.encoder_calls == 1  # a later box reuses the embedding
    model.stage1_max_side = 0  # full size from now on: the same image is embedded again
    model.predict(rgb, (10, 20, 60, 90))
    assert seg.hw == (100, 80) and seg.encoder_calls == 2
    with pytest.raises(ValueError, match="stage1_max_side"):
        DisSam(_refiner(), seg, size=S, device="cpu", stage1_max_side=-5, inference_path="eager")


def test_cli_predict_takes_stage1_max_side():
    parser = build_parser()
    assert parser.parse_args(["predict", "x.png", "--stage1-max-side", "0"]).stage1_max_side == 0
    assert parser.parse_args(["predict", "x.png"]).stage1_max_side is None
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "x.png", "--stage1-max-side", "-3"])
