"""Fixtures of the sfm-init tests: synthetic annotation folders with known cameras."""

from __future__ import annotations

import importlib.util

import pytest

HAS_PYCOLMAP = importlib.util.find_spec("pycolmap") is not None
needs_pycolmap = pytest.mark.skipif(not HAS_PYCOLMAP, reason="the sfm extra (pycolmap) is not installed: pip install 'g3d[sfm]'")


@pytest.fixture(autouse=True)
def _quiet_colmap():
    """COLMAP logs every step at INFO through glog; tests keep errors only."""
    if HAS_PYCOLMAP:
        import pycolmap

        pycolmap.logging.minloglevel = 2
    yield
