"""examples/ddp_train.py: a minires model trained under PyTorch DistributedDataParallel
on 2 CPU processes (gloo, rendezvous on 127.0.0.1) ends with identical weights on every
rank, and comes back to minires through from_torch and a safetensors file."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minires import interop
from minires.serialization import load_state_dict

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ddp_train.py"


def load_example():
    spec = importlib.util.spec_from_file_location("ddp_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(*args, timeout=600):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_two_ranks_end_with_identical_weights(torch, tmp_path):
    pytest.importorskip("torch.distributed", reason="this torch has no torch.distributed")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend for CPU DDP")
    out = tmp_path / "model.safetensors"
    result = run_example("--nproc", "2", "--steps", "3", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = dict(re.findall(r"rank (\d): weights sha256 (\w+), max \|difference\| from rank 0 "
                            r"= 0\n", result.stdout))
    assert sorted(ranks) == ["0", "1"], result.stdout
    assert len(set(ranks.values())) == 1  # identical weights on both ranks
    start = re.search(r"start sha256 (\w+)", result.stdout).group(1)
    assert start != ranks["0"]  # and training changed them
    losses = [float(v) for v in re.findall(r"step \d+: loss ([\d.]+)", result.stdout)]
    assert len(losses) == 2 and all(np.isfinite(losses))

    state = load_state_dict(out)  # back in minires: strict load, same digest
    model = interop.model_for_state_dict("resnet20", state)
    assert load_example().weights_digest(model.state_dict())[:16] == ranks["0"]
    assert int(state["bn1.num_batches_tracked"]) == 3


def test_bad_checkpoint_is_an_error_before_any_process_starts(tmp_path):
    result = run_example("--checkpoint", str(tmp_path / "none.safetensors"), timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "no checkpoint at" in result.stderr
    assert "Traceback" not in result.stderr
