"""Every CUDA source in kernels/ compiles (NVRTC, no GPU needed), so a syntax error never lands."""

from __future__ import annotations

import pytest

from isp.backend import compile_kernel_file
from isp.errors import BackendError
from isp.paths import kernel_dir

KERNELS = sorted(kernel_dir().glob("*.cu"))


def test_there_are_kernels():
    assert KERNELS, f"no *.cu files in {kernel_dir()}"


@pytest.mark.parametrize("path", KERNELS, ids=[p.name for p in KERNELS])
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_kernel_compiles_with_nvrtc(path, arch):
    ptx = compile_kernel_file(path, arch=arch)
    assert ".entry" in ptx, "the PTX defines at least one kernel entry point"


def test_a_broken_kernel_is_reported_with_the_compiler_log(tmp_path):
    broken = tmp_path / "broken.cu"
    broken.write_text('extern "C" __global__ void k(float* a) { a[0] = undefined_name; }\n')
    with pytest.raises(BackendError, match=r"(?s)broken.cu: does not compile.*undefined_name"):
        compile_kernel_file(broken)


def test_the_emulator_runs_shared_memory_tiles_with_barriers(tmp_path):
    """A block loads a tile with a halo into shared memory, syncs, and reads its neighbours there:
    the emulator must run a block's threads together for this to give the right answer."""
    np = pytest.importorskip("numpy")
    from .kernel_emulation import emulate_kernel

    source = tmp_path / "tile_sum.cu"
    source.write_text(
        r"""
extern "C" __global__ void tile_sum(const float* in, float* out, int n)
{
    __shared__ float tile[8 + 2];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x + 1] = i < n ? in[i] : 0.f;
    if (threadIdx.x == 0) tile[0] = i > 0 ? in[i - 1] : 0.f;
    if (threadIdx.x == blockDim.x - 1) tile[blockDim.x + 1] = i + 1 < n ? in[i + 1] : 0.f;
    __syncthreads();
    if (i < n) out[i] = tile[threadIdx.x] + tile[threadIdx.x + 1] + tile[threadIdx.x + 2];
}
"""
    )
    values = np.arange(1, 21, dtype=np.float32) ** 2
    out = np.zeros_like(values)
    emulate_kernel(str(source), "tile_sum", (3,), (8,), [values, out, np.int32(values.size)])
    padded = np.pad(values, 1)
    np.testing.assert_array_equal(out, padded[:-2] + padded[1:-1] + padded[2:])
