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
