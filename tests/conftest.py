"""Shared test fixtures. ``tests/fixtures/`` holds the project's test data (see its READMEs)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def stylegan_fixtures() -> Path:
    """Folder of the StyleGAN2 conformance fixtures (tests/fixtures/stylegan2)."""
    path = FIXTURES / "stylegan2"
    if not path.is_dir():
        pytest.fail(f"missing test data {path}: the checkout is incomplete (git checkout -- tests/fixtures)")
    return path


@pytest.fixture(autouse=True)
def _two_threads():
    """Tests run with the thread count CI has, so float results match between runs."""
    import torch

    torch.set_num_threads(2)
    yield
