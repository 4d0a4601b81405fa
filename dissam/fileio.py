"""Atomic file writes: the one writer behind checkpoints (:mod:`dissam.model.checkpoint`), the stage-1
cache (:mod:`dissam.coarse.cache`) and the run's small JSON files.

The data goes to a unique temporary file in the target's folder, which is then renamed over the target
(``os.replace``), so a reader never meets half a file and a crash mid-write leaves the old file (or none)
under the name, never a truncated one.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], durable: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``; returns ``path``.

    ``durable=True`` also fsyncs the file before the rename and the folder after it, so the new file
    survives a power cut (checkpoints). ``durable=False`` skips both (docs/benchmarks.md, "Evaluation"): for many
    small entries that can be recomputed and are checked when read (the stage-1 cache).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "x" (exclusive creation): the usual permissions, which mkstemp's 0600 is not.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data), durable=durable)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; not every platform allows opening a folder."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
