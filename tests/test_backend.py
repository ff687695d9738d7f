"""Backend choice, random streams, host transfer."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from isp.backend import array_module, get_backend, gpu_available, to_host
from isp.errors import BackendError


def test_auto_picks_numpy_without_a_gpu_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="isp.backend"):
        backend = get_backend("auto")
    assert backend.name == ("cupy" if gpu_available() else "numpy")
    assert "backend=auto chose" in caplog.text


def test_numpy_backend_modules():
    import scipy.ndimage

    backend = get_backend("numpy")
    assert backend.xp is np and backend.ndimage is scipy.ndimage and not backend.is_gpu
    backend.synchronize()
    assert backend.device_name() == "cpu"


@pytest.mark.skipif(gpu_available(), reason="a GPU answers here")
def test_cupy_without_a_gpu_is_a_clear_error():
    with pytest.raises(BackendError, match="backend=cupy cannot run: .*Use backend=auto or backend=numpy"):
        get_backend("cupy")


def test_unknown_backend():
    with pytest.raises(BackendError, match="backend='tpu' is not a backend; choose one of auto, numpy, cupy"):
        get_backend("tpu")


def test_streams_are_reproducible_and_independent(backend):
    a = to_host(backend.rng(7, "shot").standard_normal(1000))
    b = to_host(backend.rng(7, "shot").standard_normal(1000))
    c = to_host(backend.rng(7, "read").standard_normal(1000))
    d = to_host(backend.rng(8, "shot").standard_normal(1000))
    np.testing.assert_array_equal(a, b)
    assert abs(np.corrcoef(a, c)[0, 1]) < 0.1 and abs(np.corrcoef(a, d)[0, 1]) < 0.1


def test_host_transfer(backend):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    on_device = backend.asarray(data)
    assert array_module(on_device) is backend.xp
    np.testing.assert_array_equal(to_host(on_device), data)
    assert isinstance(backend.to_host(on_device), np.ndarray)


def test_kernels_need_cupy():
    with pytest.raises(BackendError, match="CUDA kernels need backend=cupy"):
        get_backend("numpy").kernel("demosaic", "bayer_demosaic_5x5")


@pytest.mark.gpu
def test_kernel_is_compiled_once_per_device(cupy_backend):
    cupy_backend.kernel("demosaic", "bayer_demosaic_5x5")
    cupy_backend.kernel("demosaic", "bayer_demosaic_5x5")
    assert len([key for key in cupy_backend._kernels if key[1] == "demosaic"]) == 1
    with pytest.raises(BackendError, match="kernel source 'nope.cu' not found"):
        cupy_backend.kernel("nope", "f")
