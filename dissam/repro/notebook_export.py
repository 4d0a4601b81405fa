"""Executed notebooks for readers: copies of the series, with outputs, that a static viewer renders.

``dissam reproduce`` (``make reproduce``) runs the notebooks with papermill into ``runs/<profile>/executed/``
and then writes a copy of each into ``<figures_dir>/notebooks/`` (``figures/smoke/notebooks/`` for the smoke
profile, committed with its tables and figures), so a reader browsing the repository sees every result
without running anything. A copy differs from papermill's output only where a viewer such as GitHub needs it:

* embedded PNGs wider than ``MAX_WIDTH`` pixels are downscaled (Lanczos) and every PNG is re-encoded
  (an opaque alpha channel dropped). Should the copies still exceed the size budget, they are made again
  with every image as a JPEG (quality ``JPEG_QUALITY``) instead;
* widget state (``metadata.widgets``) is removed: static viewers cannot draw widgets. A widget output (tqdm's
  progress bars) becomes the text its widgets showed at the end, e.g. ``stage 1 DIS-TR: 100% |##########|
  400/400 [01:17<00:00, 5.2img/s]``; one with no text is dropped. A widget a static page cannot show (an
  image to draw on, a button: notebook 07's box-drag demo) keeps its labels, after a note that it needs a
  live kernel (``INTERACTIVE_NOTE``);
* per-cell execution timestamps are removed, and paths under the repository are shown relative to it.

A notebook with an error (papermill's exception, an error output) is refused, and so is a set of copies over
``MAX_TOTAL_BYTES`` (5 MB) in all: nothing is written then. Needs the notebook stack
(``pip install "dissam[notebooks]"``), like :mod:`dissam.repro.reproduce`.
"""
from __future__ import annotations

import base64
import copy
import html
import io
import re
from pathlib import Path
from typing import Any

import nbformat
from PIL import Image

__all__ = ["MAX_TOTAL_BYTES", "MAX_WIDTH", "clean_notebook", "downscale_png", "export_series", "widget_text"]

MAX_WIDTH = 900  # px: wide enough to read a figure, small enough for 5 MB of notebooks
MAX_TOTAL_BYTES = 5_000_000
JPEG_QUALITY = 85  # only when lossless PNGs would not fit in MAX_TOTAL_BYTES
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TEXT_MIMES = ("text/plain", "text/html", "text/markdown")
TEXT_MODELS = ("HTMLModel", "LabelModel", "TextModel")
PROGRESS_MODELS = ("FloatProgressModel", "IntProgressModel")
BOX_MODELS = ("BoxModel", "HBoxModel", "VBoxModel", "GridBoxModel")
INTERACTIVE_NOTE = "[interactive widget: it runs in JupyterLab or Voila, with a live kernel]"


class ExportError(RuntimeError):
    """An executed notebook that must not be published: it failed, or the copies are too large."""


def downscale_png(data: str, max_width: int = MAX_WIDTH, jpeg: bool = False) -> tuple[str, str]:
    """Base64 PNG -> (MIME type, base64 image) at most ``max_width`` wide (aspect kept): a PNG re-encoded
    with optimisation (an opaque alpha channel dropped), or with ``jpeg`` a JPEG of ``JPEG_QUALITY``."""
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    if image.mode in ("RGBA", "LA") and image.getextrema()[-1][0] == 255:
        image = image.convert(image.mode[:-1])
    buffer = io.BytesIO()
    if jpeg:
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(buffer, format="PNG", optimize=True)
    return ("image/jpeg" if jpeg else "image/png"), base64.b64encode(buffer.getvalue()).decode("ascii")


def _widget_parts(model_id: str, state: dict[str, Any], depth: int = 0) -> list[str]:
    model = state.get(model_id)
    if model is None or depth > 8:
        return []
    name, values = model.get("model_name", ""), model.get("state", {})
    if name in TEXT_MODELS:
        shown = re.sub(r"<(style|script)\b.*?</\1>", "", str(values.get("value", "")), flags=re.S | re.I)
        text = html.unescape(re.sub(r"<[^>]*>", "", shown))
        return [text.replace("\u2007", " ").strip()]
    if name in PROGRESS_MODELS:
        top, value = float(values.get("max") or 0), float(values.get("value") or 0)
        filled = round(10 * min(1.0, value / top)) if top > 0 else 0
        return ["|" + "#" * filled + " " * (10 - filled) + "|"]
    parts = []
    for child in values.get("children", []):
        parts += _widget_parts(str(child).removeprefix("IPY_MODEL_"), state, depth + 1)
    return parts


def _interactive(model_id: str, state: dict[str, Any], depth: int = 0) -> bool:
    """Whether a widget holds a model that text cannot stand for (anything but labels, bars and boxes)."""
    model = state.get(model_id)
    if model is None or depth > 8:
        return False
    name = model.get("model_name", "")
    if name in BOX_MODELS:
        return any(_interactive(str(child).removeprefix("IPY_MODEL_"), state, depth + 1)
                   for child in model.get("state", {}).get("children", []))
    return name not in TEXT_MODELS + PROGRESS_MODELS


def widget_text(model_id: str, state: dict[str, Any]) -> str:
    """What a widget (a box of HTML labels and progress bars, as tqdm draws) showed at the end, as text;
    for one a static page cannot show, :data:`INTERACTIVE_NOTE` and then its labels."""
    text = " ".join(part for part in _widget_parts(model_id, state) if part)
    return f"{INTERACTIVE_NOTE} {text}".strip() if _interactive(model_id, state) else text


def _relative(text: str, root: str | None) -> str:
    return text.replace(root.rstrip("/") + "/", "") if root else text


def _clean_output(output: dict[str, Any], state: dict[str, Any], root: str | None, max_width: int,
                  jpeg: bool) -> dict[str, Any] | None:
    if output.get("output_type") == "stream":
        output["text"] = _relative("".join(output["text"]) if isinstance(output["text"], list) else output["text"],
                                   root)
        return output
    data = output.get("data")
    if data is None:
        return output
    if WIDGET_VIEW in data:
        text = widget_text(str(data[WIDGET_VIEW].get("model_id", "")), state) or "".join(data.get("text/plain", ""))
        if not text.strip():
            return None
        return nbformat.v4.new_output("stream", name="stdout", text=_relative(text, root) + "\n")
    if "image/png" in data:
        png = data.pop("image/png")
        mime, image = downscale_png("".join(png) if isinstance(png, list) else png, max_width, jpeg)
        data[mime] = image
        if mime != "image/png" and "image/png" in output.get("metadata", {}):
            output["metadata"][mime] = output["metadata"].pop("image/png")
    for mime in TEXT_MIMES:
        if mime in data:
            value = "".join(data[mime]) if isinstance(data[mime], list) else data[mime]
            data[mime] = _relative(value, root)
    return output


def _errors(notebook: dict[str, Any]) -> list[str]:
    found = []
    exception = notebook.get("metadata", {}).get("papermill", {}).get("exception")
    if exception:
        found.append(f"papermill recorded an exception: {exception}")
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    return found


def clean_notebook(notebook: dict[str, Any], root: str | Path | None = None, max_width: int = MAX_WIDTH,
                   jpeg: bool = False) -> dict[str, Any]:
    """The reader's copy of an executed notebook (a new object; see the module docstring for what changes).
    Raises :class:`ExportError` if the notebook recorded an error."""
    errors = _errors(notebook)
    if errors:
        raise ExportError("; ".join(errors))
    book = copy.deepcopy(notebook)
    root_text = str(root) if root else None
    widgets = book.get("metadata", {}).pop("widgets", None) or {}
    state = widgets.get(WIDGET_STATE, {}).get("state", {})
    papermill = book.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if isinstance(papermill.get(key), str):
            papermill[key] = _relative(papermill[key], root_text)
    for cell in book.get("cells", []):
        cell.get("metadata", {}).pop("execution", None)
        if cell.get("cell_type") == "code":
            outputs = (_clean_output(o, state, root_text, max_width, jpeg) for o in cell.get("outputs", []))
            cell["outputs"] = [o for o in outputs if o is not None]
    return book


def _copies(executed: list[Path], root: str | Path | None, max_width: int, jpeg: bool) -> dict[str, bytes]:
    texts = {}
    for path in executed:
        book = nbformat.read(str(path), as_version=4)
        try:
            clean = clean_notebook(book, root, max_width, jpeg)
        except ExportError as err:
            raise ExportError(f"{path.name}: {err}") from None
        nbformat.validate(clean)
        texts[path.name] = nbformat.writes(clean).encode("utf-8")
    return texts


def export_series(executed: list[Path], out_dir: Path, root: str | Path | None = None,
                  max_width: int = MAX_WIDTH, max_total: int = MAX_TOTAL_BYTES) -> dict[str, int]:
    """Write the reader's copy of each executed notebook into ``out_dir``; return {file name: bytes}.

    The copies, with any other notebooks already in ``out_dir``, must stay under ``max_total`` bytes in all
    (JPEG images are the fallback when PNGs do not fit); otherwise, or if a notebook failed, or a copy is not
    valid nbformat, :class:`ExportError` is raised and nothing is written."""
    names = {path.name for path in executed}
    others = sum(p.stat().st_size for p in out_dir.glob("*.ipynb") if p.name not in names) if out_dir.is_dir() else 0
    for jpeg in (False, True):
        texts = _copies(executed, root, max_width, jpeg)
        total = others + sum(len(t) for t in texts.values())
        if total <= max_total:
            break
    else:
        sizes = ", ".join(f"{name} {len(t) / 1e6:.2f} MB" for name, t in texts.items())
        raise ExportError(f"executed notebooks take {total / 1e6:.2f} MB with JPEG images, over the "
                          f"{max_total / 1e6:.2f} MB budget ({sizes}; other notebooks in {out_dir}: "
                          f"{others / 1e6:.2f} MB)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out_dir / name).write_bytes(text)
    return {name: len(text) for name, text in texts.items()}
