"""Shared fixtures: the reference data folder, backends, and the ``gpu`` marker.

``xp_backend`` runs a test body on NumPy and, where CuPy and a GPU answer, on CuPy; the CuPy
case is marked ``gpu`` and skipped cleanly without one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from isp.backend import get_backend, gpu_available

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """``$ISP_DATA_DIR`` or ``../shared/data`` beside the checkout, if it exists."""
    env = os.environ.get("ISP_DATA_DIR")
    candidate = Path(env) if env else ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if path is None:
        pytest.skip("reference data not found: set ISP_DATA_DIR or place it at ../shared/data")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU (none answers on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request: pytest.FixtureRequest):
    """Each backend in turn (CuPy only where a GPU answers)."""
    return get_backend(request.param)


@pytest.fixture(scope="session")
def numpy_backend():
    return get_backend("numpy")


@pytest.fixture(scope="session")
def cupy_backend():
    if not gpu_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    return get_backend("cupy")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
