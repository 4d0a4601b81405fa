"""ONNX export and the onnxruntime backend: the exported graph gives PyTorch's probabilities (1e-4) at
several sizes and batches, with and without the coarse prior; the file passes onnx's checker and carries
the predictor's metadata; DisSam gives the same mask on both backends; `dissam export` and its errors.
Three exports in all (about 2 s each here): the module's two files and one in-memory export."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dissam.cli import main
from dissam.repro.config import get_profile
from dissam.model import build_refiner, load_refiner, predict_prob, save_refiner
from dissam.model.checkpoint import CheckpointError
from dissam.predictor import DisSam
from helpers import randomised_batchnorm

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dissam.model.onnx_export import (FORMAT, INSTALL_HINT, OnnxRefiner, export_refiner,  # noqa: E402
                                      onnx_bytes)

WIDTH = 0.125


def save_trained_like(path: Path, coarse_prior: float) -> Path:
    """A random refiner saved as training saves it: weights, profile name, variant, stage 1 and train_config."""
    profile = get_profile("tiny")
    torch.manual_seed(1)
    model = randomised_batchnorm(build_refiner(in_ch=5, width=WIDTH, coarse_prior=coarse_prior))
    train_config = {**dataclasses.asdict(profile.train), "coarse_prior": coarse_prior, "use_box": False}
    return save_refiner(model, path, iteration=4, profile=profile.name, variant=dataclasses.asdict(profile.variant),
                        stage1=STAGE1, train_config=train_config)


STAGE1 = {"kind": "grabcut", "iters": 1}  # what the tiny profile's training records


PRIORS = [pytest.param(0.0, id="no-prior"), pytest.param(4.0, id="prior4")]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[float, tuple[Path, Path]]:
    """{coarse_prior: (checkpoint, ONNX file written by `dissam export`)} for k = 0 and k = 4."""
    out = {}
    for prior in (0.0, 4.0):
        folder = tmp_path_factory.mktemp(f"onnx{prior:g}")
        ckpt = save_trained_like(folder / "refiner.pt", prior)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert main(["export", str(ckpt), "-o", str(folder / "sub" / "refiner.onnx")]) == 0
        (folder / "printed.txt").write_text(printed.getvalue())
        out[prior] = ckpt, folder / "sub" / "refiner.onnx"
    return out


def _input(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 5, h, w, generator=g) - 0.5
    x[:, 3] = (torch.rand(batch, h, w, generator=g) > 0.5).float()  # coarse mask in {0, 1}
    x[:, 4] = 0.0
    x[:, 4, h // 4:3 * h // 4, w // 4:3 * w // 4] = 1.0  # filled box
    return x


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 64, 64), (1, 96, 128), (2, 96, 128)])
def test_onnx_probabilities_equal_pytorch(exports, prior, shape):
    ckpt, path = exports[prior]
    model = load_refiner(ckpt)
    assert model.coarse_prior == prior
    runner = OnnxRefiner.from_file(path)
    x = _input(*shape)
    ref = predict_prob(model, x).numpy()
    out = runner(x.numpy())
    assert out.shape == ref.shape == (shape[0], 1, *shape[1:])
    assert np.abs(out - ref).max() <= 1e-4
    if prior:  # the prior is in the graph: where the refiner is unsure, stage 1's mask decides
        mask = x[:, 3:4].numpy() > 0.5
        assert out[mask].mean() > 0.9 and out[~mask].mean() < 0.1


@pytest.mark.parametrize("prior", PRIORS)
def test_onnx_file_is_checked_dynamic_and_carries_metadata(exports, prior):
    _, path = exports[prior]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 5, "height", "width"]
    runner = OnnxRefiner.from_file(path)
    assert runner.config == {"in_ch": 5, "width": WIDTH, **({"coarse_prior": prior} if prior else {})}
    assert runner.meta == {"train_config": {"size": 64, "use_mask": True, "use_box": False}, "profile": "tiny",
                           "variant": dataclasses.asdict(get_profile("tiny").variant), "stage1": STAGE1}
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["dissam_format"] == FORMAT


class BoxSegmenter:
    """Stage-1 stand-in: a filled ellipse inside the box (deterministic, so both backends see one mask)."""

    def set_image(self, image: np.ndarray) -> None:
        self.hw = image.shape[:2]

    def predict(self, box):
        from types import SimpleNamespace

        yy, xx = np.mgrid[:self.hw[0], :self.hw[1]]
        x0, y0, x1, y1 = box
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max(1, (x1 - x0) / 2), max(1, (y1 - y0) / 2)
        return SimpleNamespace(mask=((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) <= 1).astype(np.uint8) * 255)


@pytest.mark.parametrize("prior", PRIORS)
def test_dissam_onnx_backend_gives_the_pytorch_mask(exports, prior):
    ckpt, path = exports[prior]
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    rgb[20:50, 25:60] = (200, 40, 40)
    box = (22, 15, 64, 55)
    torch_model = DisSam.from_checkpoint(ckpt, coarse=BoxSegmenter(), device="cpu")
    models = [DisSam.from_checkpoint(path, coarse=BoxSegmenter())]
    if prior:  # a checkpoint exported in memory (once: it costs an export)
        models.append(DisSam.from_checkpoint(ckpt, coarse=BoxSegmenter(), backend="onnxruntime"))
    ref = torch_model.predict(rgb, box)
    assert torch_model.backend == "torch"
    for model in models:
        assert model.backend == "onnxruntime"
        assert (model.size, model.use_mask, model.use_box, model.in_ch) == (64, True, False, 5)
        pred = model.predict(rgb, box)
        assert np.abs(pred.prob.astype(int) - ref.prob.astype(int)).max() <= 1
        sure = np.abs(ref.prob.astype(int) - 128) > 1  # (an untrained refiner's map sits near 0.5)
        assert np.array_equal(pred.mask[sure], ref.mask[sure])
        if prior:  # with the prior the mask is stage 1's ellipse, and must be the same everywhere
            assert np.array_equal(pred.mask, ref.mask) and ref.mask.mean() > 50


def test_cli_export_writes_the_file_and_says_so(exports):
    """(The export itself ran in the fixture, through `dissam export`.)"""
    ckpt, path = exports[4.0]
    assert (ckpt.parent / "printed.txt").read_text().startswith(f"wrote {path} (")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary


def test_bad_inputs_give_clear_errors(exports, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["export", str(garbage), "-o", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert "garbage.pt" in err and "cannot read as a torch checkpoint" in err and "\n" == err[-1]
    assert main(["export", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "n.onnx")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_refiner(garbage, tmp_path / "refiner.pt")
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.onnx: cannot load as an ONNX model"):
        DisSam.from_checkpoint(bad_onnx, coarse=BoxSegmenter())
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX model, but not a dissam export
    foreign.write_bytes(onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["prob"])], "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("prob", onnx.TensorProto.FLOAT, [1])])).SerializeToString())
    with pytest.raises(CheckpointError, match="dissam export"):
        DisSam.from_checkpoint(foreign, coarse=BoxSegmenter())
    ckpt, path = exports[0.0]
    with pytest.raises(ValueError, match="backend"):
        DisSam.from_checkpoint(ckpt, coarse=BoxSegmenter(), backend="tensorrt")
    with pytest.raises(ValueError, match="onnxruntime"):
        DisSam.from_checkpoint(foreign, coarse=BoxSegmenter(), backend="torch")
    with pytest.raises(ValueError, match=r"input \[B, 5, H, W\]"):
        OnnxRefiner.from_file(path)(np.zeros((5, 64, 64), np.float32))


def test_missing_onnx_packages_say_which_extra(exports, tmp_path, monkeypatch, capsys):
    ckpt, _ = exports[0.0]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        DisSam.from_checkpoint(ckpt, coarse=BoxSegmenter(), backend="onnxruntime")
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(ckpt), "-o", str(tmp_path / "r.onnx")]) == 2
    assert INSTALL_HINT in capsys.readouterr().err
    with pytest.raises(ImportError, match="onnx is not installed"):
        onnx_bytes(load_refiner(ckpt))
