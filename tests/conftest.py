"""Shared test fixtures. ``../shared`` (beside the checkout) holds the project's test data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("G3D_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def stylegan_fixtures() -> Path:
    """Folder of the StyleGAN2 conformance fixtures (../shared/fixtures/stylegan2)."""
    path = FIXTURES / "stylegan2"
    if not path.is_dir():
        pytest.fail(f"missing test data {path}: clone the project with its shared/ folder beside it")
    return path


@pytest.fixture(autouse=True)
def _two_threads():
    """Tests run with the thread count CI has, so float results match between runs."""
    import torch

    torch.set_num_threads(2)
    yield
