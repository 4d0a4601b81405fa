"""The papermill driver: failures name the notebook and cell; the paper profile's dry run goes end to end."""
from __future__ import annotations

import base64
import io

import nbformat
import pytest
import torch
from PIL import Image

from dissam.repro import reproduce
from dissam.repro.config import RunParams, get_profile


def _notebook(path, sources):
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("PROFILE = 'tiny'\nDATA_DIR = None\nSAM_CHECKPOINT = None\n"
                                       "SAM_MODEL_TYPE = None\nDRY_RUN = False")
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nbformat.write(book, path)


def test_failure_names_notebook_and_cell_and_keeps_partial_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr("dissam.repro.config.RUNS_ROOT", tmp_path / "runs")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "00_data_enrichment.ipynb", ["x = 1", "raise RuntimeError('boom in cell')"])
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", notebooks)
    code = reproduce.run_series("tiny", notebooks=["00"])
    err = capsys.readouterr().err
    assert code == 1
    assert "00_data_enrichment" in err and "RuntimeError" in err and "boom in cell" in err
    assert "cell" in err
    assert (tmp_path / "runs" / "tiny" / "executed" / "00_data_enrichment.ipynb").exists()


def test_success_writes_readers_copies_into_the_figures_folder(tmp_path, monkeypatch, capsys):
    """After the series runs, figures_dir/notebooks/ (the run folder's for tiny) holds each executed notebook
    with its outputs, images downscaled and tqdm's widget bars turned into text."""
    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path / "runs"))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "00_data_enrichment.ipynb", [
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'): pass",
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(20, 2), dpi=100)\nplt.plot([0, 1])\nplt.show()"])
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", notebooks)
    assert reproduce.run_series("tiny", notebooks=["00"]) == 0
    reader = tmp_path / "runs" / "tiny" / "figures" / "notebooks" / "00_data_enrichment.ipynb"
    assert str(reader.parent) in capsys.readouterr().out
    book = nbformat.read(reader, as_version=4)
    nbformat.validate(book)
    assert "widgets" not in book.metadata
    outputs = [o for cell in book.cells for o in cell.get("outputs", [])]
    assert any(o.output_type == "stream" and "steps: 100%" in o.text for o in outputs)
    [png] = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert Image.open(io.BytesIO(base64.b64decode(png))).width == 900  # 2000 px, downscaled


def test_the_run_shows_no_kernel_log_noise(tmp_path, monkeypatch, capfd):
    """The terminal gets one line per notebook, not the kernel's start-up log (ipykernel 7 warns at each
    start that its localhost sockets are unencrypted); what a cell writes to stderr stays in the notebook."""
    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path / "runs"))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "00_data_enrichment.ipynb", ["import sys\nprint('cell note', file=sys.stderr)"])
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", notebooks)
    assert reproduce.run_series("tiny", notebooks=["00"]) == 0
    shown = capfd.readouterr()
    assert "00_data_enrichment" in shown.out
    assert "Kernel is running" not in shown.err + shown.out and "cell note" not in shown.err
    executed = nbformat.read(tmp_path / "runs" / "tiny" / "executed" / "00_data_enrichment.ipynb", as_version=4)
    assert any("cell note" in o.get("text", "") for cell in executed.cells for o in cell.get("outputs", []))


def test_the_photo_profile_is_not_a_series(tmp_path, monkeypatch):
    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path / "runs"))
    with pytest.raises(ValueError, match="not a series profile.*make photo-finetune"):
        reproduce.run_series("photo")
    assert not (tmp_path / "runs").exists()  # refused before anything is written


def test_unknown_notebook_selection_is_an_error():
    with pytest.raises(ValueError, match="no notebook matches"):
        reproduce._select(["99"])


@pytest.mark.slow
def test_paper_profile_dry_run_end_to_end(tmp_path, monkeypatch):
    """DIS5K-layout folder + a SAM checkpoint file (the tiny SAM's) -> every notebook of the series runs,
    on the paper profile's code path (SAM stage 1, full-width IS-Net), two iterations at 64 px."""
    from dissam.coarse.tiny_sam import build_tiny_sam
    from dissam.data.procedural import generate_dataset

    monkeypatch.setenv("DISSAM_RUNS", str(tmp_path / "runs"))
    data = tmp_path / "DIS5K"
    cfg = get_profile("tiny").data
    cfg.n_train, cfg.n_val, cfg.n_test, cfg.n_zero_shot = 6, 3, 2, 2
    generate_dataset(data, cfg, progress=False)
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save(build_tiny_sam().state_dict(), checkpoint)
    code = reproduce.run_series(RunParams("paper", data_dir=data, sam_checkpoint=checkpoint, sam_model_type="tiny",
                                          dry_run=True))
    assert code == 0
    figures = tmp_path / "runs" / "paper-dryrun" / "figures"
    for name in ("table1.md", "table2.md", "table3.md", "fig1_pipeline.png", "fig2_enrichment.png",
                 "fig3_qualitative.png", "fig4_boxes.png", "fig5_ablation.png", "training_curves.png",
                 "table3_ablation.png", "zero_shot.png"):
        assert (figures / name).exists(), name
    refiner = torch.load(tmp_path / "runs" / "paper-dryrun" / "checkpoints" / "dissam_refiner.pt", weights_only=True)
    assert refiner["model_config"]["width"] == 1.0 and refiner["iteration"] == 2
