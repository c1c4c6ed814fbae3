"""The emulated GPU tests can fail: planted kernel bugs must each fail them.

Each mutant below is one small edit of a ``.cu`` source (or of gpu.py's launch shapes),
applied to a COPY of the package in a temporary folder, never to the live kernels.  pytest
then runs the GPU tests that should notice, in that copy, under ``--device cuda-emulated``,
and must report a failure; the unmutated copy must pass the same tests.  Runs only with
``--device cuda-emulated`` (about a minute: one pytest process per mutant, stopping at the
first failure).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CUDA_EMULATED

ROOT = Path(__file__).resolve().parents[1]
CUDA = "minires/kernels/cuda"
KERNEL_TESTS = "tests/test_kernels_cuda.py"

# (id, file, text in the original, text in the mutant, pytest -k selection that must fail)
MUTANTS = [
    ("off_by_one_bound", f"{CUDA}/im2col.cu",
     "    const int t = blockIdx.x * blockDim.x + threadIdx.x;\n    if (t >= total) return;\n"
     "    // Unravel t = ((((n*OH",
     "    const int t = blockIdx.x * blockDim.x + threadIdx.x;\n    if (t > total) return;\n"
     "    // Unravel t = ((((n*OH", "im2col_and_col2im"),
    ("missing_barrier", f"{CUDA}/batchnorm.cu",
     "shared[threadIdx.x] += shared[threadIdx.x + half];\n        __syncthreads();",
     "shared[threadIdx.x] += shared[threadIdx.x + half];", "batch_norm_matches_cpu"),
    ("barrier_in_divergent_branch", f"{CUDA}/batchnorm.cu",
     "if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];\n"
     "        __syncthreads();",
     "if (threadIdx.x < half) {\n            shared[threadIdx.x] += shared[threadIdx.x + half];"
     "\n            __syncthreads();\n        }", "batch_norm_matches_cpu"),
    ("swapped_h_and_w", f"{CUDA}/im2col.cu",
     "const int ow = rest % OW; rest /= OW;\n    const int oh = rest % OH;",
     "const int ow = rest % OH; rest /= OH;\n    const int oh = rest % OW;", "im2col_and_col2im"),
    ("grid_rounded_down", f"{CUDA}/gpu.py",
     "blocks = (total + THREADS - 1) // THREADS", "blocks = max(1, total // THREADS)",
     "activations_match_cpu"),
    ("too_little_shared_memory", f"{CUDA}/gpu.py",
     "shared_mem=REDUCE_THREADS * 8", "shared_mem=REDUCE_THREADS * 4", "batch_norm_matches_cpu"),
    ("nan_variance_clamped_to_zero", f"{CUDA}/batchnorm.cu",
     "var_d < 0.0 ? 0.0 : var_d", "var_d > 0.0 ? var_d : 0.0", "nan_and_inf_match_cpu"),
    ("pool_window_bound_dropped", f"{CUDA}/pool.cu",
     "            if (q >= OW) continue;\n            const int o = ",
     "            const int o = ", "max_pool"),
]


@pytest.fixture(scope="module")
def copy_root(request, tmp_path_factory):
    """A copy of the package and its tests (what a mutant edits)."""
    if request.config.getoption("--device") != CUDA_EMULATED:
        pytest.skip("the mutation test of the GPU tests runs with --device cuda-emulated")
    root = tmp_path_factory.mktemp("mutants")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("minires", "tests"):
        shutil.copytree(ROOT / folder, root / folder, ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy2(ROOT / name, root / name)
    return root


def _run_emulated(root: Path, selection: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", KERNEL_TESTS, "--device", CUDA_EMULATED, "-x",
               "-q", "-p", "no:cacheprovider", "-k", selection]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600,
                          env=env)


def test_the_unmutated_copy_passes_the_selected_tests(copy_root):
    selection = " or ".join(sorted({m[4] for m in MUTANTS}))
    result = _run_emulated(copy_root, selection)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("name, path, original, mutant, selection", MUTANTS,
                         ids=[m[0] for m in MUTANTS])
def test_a_planted_kernel_bug_fails_the_emulated_tests(copy_root, name, path, original,
                                                       mutant, selection):
    target = copy_root / path
    text = target.read_text()
    assert text.count(original) == 1, f"{name}: the text to mutate is not in {path} once"
    target.write_text(text.replace(original, mutant))
    try:
        result = _run_emulated(copy_root, selection)
    finally:
        target.write_text(text)
    assert result.returncode == 1 and " failed" in result.stdout, (
        f"mutant {name} survived (exit {result.returncode}):\n{result.stdout[-3000:]}")
