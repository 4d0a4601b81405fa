"""Run the notebook series 00-07 headlessly with papermill, in order, into ``runs/<profile>/executed/``.

07, the box-drag demo, runs like the others: its widget is built (with no browser it stays unused) and its
static figure, the stage-1 and refined panels of one box, is what the executed copy shows; in JupyterLab or
Voila the same notebook is interactive.

Source notebooks are never written: each executed copy goes to the run folder, with the notebooks'
folder as working directory and the ``python3`` kernel. On failure the partial notebook is kept and
the notebook and cell are named. After a successful run, a reader's copy of each executed notebook goes to
``<figures_dir>/notebooks/`` (``figures/smoke/notebooks/`` for the smoke profile; see
:mod:`dissam.repro.notebook_export`). Needs the notebook stack: ``pip install "dissam[notebooks]"``.
"""
from __future__ import annotations

import sys
import time

from .config import REPO_ROOT, RunParams, profile_from_params

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
INSTALL_HINT = 'pip install "dissam[notebooks]"'
SERIES = ("00_data_enrichment", "01_sam_caching", "02_training", "03_evaluation", "04_ablations",
          "05_zero_shot", "06_figures", "07_box_drag_demo")


def _select(only: list[str] | None) -> list[str]:
    if not only:
        return list(SERIES)
    chosen = [nb for nb in SERIES if any(nb.startswith(prefix) for prefix in only)]
    if not chosen:
        raise ValueError(f"no notebook matches {only}; the series is {', '.join(SERIES)}")
    return chosen


def _failure(err: BaseException) -> str:
    """Which cell failed and why, from papermill's execution error or nbclient's cell timeout."""
    cell = getattr(err, "cell_index", None)
    exec_count = getattr(err, "exec_count", None)
    where = f"cell {cell}" if cell is not None else "a cell"
    if exec_count is not None:
        where += f" (execution count {exec_count})"
    name = getattr(err, "ename", type(err).__name__)
    value = getattr(err, "evalue", str(err))
    return f"{where}: {name}: {str(value).strip().splitlines()[0] if str(value).strip() else ''}"


# ipykernel 7 warns at every start that its sockets are plain TCP (they listen on localhost only): seven
# identical warnings in every run's output. Kernel log records below ERROR are dropped; what the cells
# print, warnings included, still goes into the executed notebooks.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
SERIES_PROFILES = ("tiny", "smoke", "paper")


def run_series(params: RunParams | None = None, notebooks: list[str] | None = None,
               cell_timeout: int | None = None) -> int:
    """Execute the series for ``params`` (:class:`RunParams`: the profile and its files, passed to every
    notebook as ``RUN``); print each notebook's time; write the reader's copies of the executed notebooks
    into the profile's ``figures_dir / "notebooks"``; return a process exit code."""
    try:
        import papermill as pm

        from .notebook_export import ExportError, export_series
    except ImportError as err:
        raise ModuleNotFoundError(f"dissam reproduce runs the notebooks with papermill, which is not installed "
                                  f"({err}); install the notebook extra: {INSTALL_HINT}", name=err.name) from err

    params = RunParams.of(params)
    prof = profile_from_params(params)
    if prof.name not in SERIES_PROFILES:
        raise ValueError(f"the {prof.name} profile is not a series profile (its tables would train full-width "
                         f"ablations on the CPU); the series runs on {', '.join(SERIES_PROFILES)}"
                         + ("; the photo fine-tune is `make photo-finetune`" if prof.name == "photo" else ""))
    out_dir = prof.run_dir / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"RUN": {**params.as_dict(), "profile": prof.name}}
    print(f"dissam reproduce: profile {prof.name}{' (dry run)' if params.dry_run else ''}; "
          f"executed notebooks -> {out_dir}")
    total = time.perf_counter()
    selected = _select(notebooks)
    for name in selected:
        source, target = NOTEBOOK_DIR / f"{name}.ipynb", out_dir / f"{name}.ipynb"
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(source), str(target), parameters=parameters, kernel_name="python3",
                                cwd=str(NOTEBOOK_DIR), progress_bar=False, execution_timeout=cell_timeout,
                                extra_arguments=KERNEL_ARGS)
        except Exception as err:  # papermill's PapermillExecutionError, nbclient's CellTimeoutError, ...
            print(f"FAILED {name} after {time.perf_counter() - start:.0f} s in {_failure(err)}\n"
                  f"  partial notebook kept: {target}", file=sys.stderr)
            return 1
        print(f"  {name:<22} {time.perf_counter() - start:7.1f} s", flush=True)
    reader_dir = prof.figures_dir / "notebooks"
    try:
        sizes = export_series([out_dir / f"{name}.ipynb" for name in selected], reader_dir, root=REPO_ROOT)
    except ExportError as err:
        print(f"FAILED writing the executed notebooks to {reader_dir}: {err}", file=sys.stderr)
        return 1
    print(f"executed notebooks for readers -> {reader_dir} ({sum(sizes.values()) / 1e6:.2f} MB)")
    print(f"done in {(time.perf_counter() - total) / 60:.1f} min; figures and tables in {prof.figures_dir}")
    return 0
