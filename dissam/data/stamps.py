"""Cheap identities of data files, read from the folder listing without opening a file.

A *stamp* is a file's (size in bytes, modification time in ns). The caches built from a data folder (the
stage-1 cache's manifests, the resized training cache) record the stamps of the files they read, so a
later start can tell "nothing changed" from the listing alone (one ``stat`` per file) instead of reading
and hashing every image again. Rewriting a file changes its stamp, which sends it back to a full check.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from .folders import Pair


def file_stamp(path: str | os.PathLike) -> tuple[int, int]:
    """(size in bytes, mtime in ns) of ``path``; raises FileNotFoundError when it is missing."""
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def pair_stamp(pair: Pair) -> list[int]:
    """The stamps of an image and its GT as one flat list ``[im size, im mtime, gt size, gt mtime]``."""
    return [*file_stamp(pair.image_path), *file_stamp(pair.gt_path)]


def listing_digest(pairs: Iterable[Pair]) -> str:
    """One digest of the names and stamps of every image and GT file of a split (hex, 32 characters)."""
    h = hashlib.blake2b(digest_size=16)
    for pair in pairs:
        h.update(f"{Path(pair.image_path).name}|{Path(pair.gt_path).name}|{pair_stamp(pair)}\n".encode())
    return h.hexdigest()
