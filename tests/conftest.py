"""Shared fixtures: a tiny procedural data set (64 px, tiny-profile counts), generated once per session."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from dissam.repro.config import get_profile


@pytest.fixture(scope="session", autouse=True)
def private_user_cache(tmp_path_factory):
    """The inference-path choices a DisSam caches go to a session folder, never the user's ~/.cache."""
    before = os.environ.get("DISSAM_CACHE_DIR")
    os.environ["DISSAM_CACHE_DIR"] = str(tmp_path_factory.mktemp("user_cache"))
    yield
    if before is None:
        os.environ.pop("DISSAM_CACHE_DIR", None)
    else:
        os.environ["DISSAM_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def tiny_data_config():
    """The tiny profile's DataConfig (64 px; 12 train, 4 val, 3 per test split and zero-shot family)."""
    return dataclasses.replace(get_profile("tiny").data, root=None)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_data_config) -> Path:
    """Root of a generated tiny data set in DIS5K layout (read-only for tests: copy before changing it)."""
    from dissam.data.procedural import generate_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    generate_dataset(root, tiny_data_config, progress=False)
    return root
