"""Fixtures for the model tests: a tiny, complete PLANT bundle built in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.bundle_factory import build_tiny_bundle


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """A bundle directory (model.onnx, tokenizer.json, bundle.json) over bundle_factory's codes."""
    return build_tiny_bundle(tmp_path / "bundle")
