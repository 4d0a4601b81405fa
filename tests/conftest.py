"""Shared fixtures: a tiny procedural data set (64 px, tiny-profile counts), generated once per session."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dissam.config import get_profile


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
