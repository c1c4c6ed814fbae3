"""``python -m minires export``: saved weights to a torch state dict, ONNX or safetensors;
every bad input is ``error: ...`` and exit code 2."""

import numpy as np
import pytest

import minires
from minires import interop, models
from minires.__main__ import main
from minires.serialization import load_state_dict
from tests.interop_models import build


@pytest.fixture
def weights(tmp_path):
    """A resnet20 for MNIST (1 channel, width 4) with random BN statistics, saved."""
    model = build(lambda: models.resnet20(widths=(4, 8, 16), in_channels=1), np.float32)
    return model, minires.save(model.state_dict(), tmp_path / "w.safetensors")


def run(argv, capsys):
    code = main(["export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_to_safetensors_keeps_every_tensor(weights, tmp_path, capsys):
    model, path = weights
    out = tmp_path / "copy.safetensors"
    code, stdout, _ = run([str(path), "--model", "resnet20", "--to", "safetensors",
                           "--out", str(out)], capsys)
    assert code == 0 and f"wrote {out}" in stdout
    copy = load_state_dict(out)
    original = model.state_dict()
    assert set(copy) == set(original)  # safetensors stores keys sorted
    for key, value in original.items():
        np.testing.assert_array_equal(copy[key], value, err_msg=key)
        assert copy[key].dtype == value.dtype


def test_export_to_torch_loads_with_weights_only(torch, weights, tmp_path, capsys):
    model, path = weights
    out = tmp_path / "model.pt"
    code, stdout, _ = run([str(path), "--model", "resnet20", "--width", "4", "--to", "torch",
                           "--out", str(out)], capsys)
    assert code == 0, stdout
    state = torch.load(out, weights_only=True)  # plain tensors: no code runs on load
    twin = interop.to_torch(build(lambda: models.resnet20(widths=(4, 8, 16), in_channels=1),
                                  np.float32, seed=5))
    twin.load_state_dict(state, strict=True)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    model.eval()
    twin.eval()
    np.testing.assert_allclose(twin(torch.tensor(x)).detach().numpy(),
                               model(minires.tensor(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_export_to_onnx_runs(weights, tmp_path, capsys):
    onnx_reference = pytest.importorskip("onnx.reference", reason="the onnx package is not "
                                         "installed (pip install 'minires[onnx]')")
    model, path = weights
    out = tmp_path / "model.onnx"
    code, stdout, _ = run([str(path), "--model", "resnet20", "--to", "onnx", "--out", str(out)],
                          capsys)
    assert code == 0 and "(N, 1, 28, 28)" in stdout
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    got = onnx_reference.ReferenceEvaluator(str(out)).run(None, {"input": x})[0]
    model.eval()
    expected = model(minires.tensor(x)).numpy()
    assert np.max(np.abs(got - expected)) / np.max(np.abs(expected)) < 1e-4


def test_export_of_an_imagenet_model(weights, tmp_path, capsys):
    model = models.ResNet("basic", (1, 1, 1, 1), num_classes=7)
    path = minires.save(model.state_dict(), tmp_path / "r.safetensors")
    # resnet18's layout has 2 blocks per stage: these weights do not fit it
    code, _, stderr = run([str(path), "--model", "resnet18", "--to", "safetensors",
                           "--out", str(tmp_path / "o.safetensors")], capsys)
    assert code == 2 and "missing: layer1.1.conv1.weight" in stderr
    full = models.resnet18(num_classes=7)
    path = minires.save(full.state_dict(), tmp_path / "r18.safetensors")
    code, stdout, _ = run([str(path), "--model", "resnet18", "--to", "safetensors",
                           "--out", str(tmp_path / "o.safetensors")], capsys)
    assert code == 0 and "11,180,103 parameters" in stdout  # 11.7M with 1000 classes


@pytest.mark.parametrize(("change", "message"), [
    (["--model", "resnet32"], "missing: layer1.3.conv1.weight"),
    (["--model", "resnet99"], "unknown model 'resnet99'; known models: resnet20"),
    (["--width", "8"], "the weights have width 4"),
    (["--model", "resnet18", "--width", "4"], "fixed widths; drop --width"),
    (["--out", "model.onnx"], "--to safetensors writes a .safetensors file"),
    (["--weights", "missing.safetensors"], "no checkpoint at"),
    (["--weights", "model.pkl"], "minires no longer reads pickles"),
    (["--weights", "other.safetensors"], "no 'conv1.weight' of a ResNet"),
    (["--weights", "garbage.safetensors"], "is not a file minires.save wrote"),
])
def test_bad_inputs_are_errors_with_exit_2(weights, tmp_path, capsys, change, message):
    _, path = weights
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    minires.save({"weight": np.zeros(3, np.float32)}, tmp_path / "other.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"not safetensors at all")
    argv = {"--weights": str(path), "--model": "resnet20", "--to": "safetensors",
            "--out": str(tmp_path / "out.safetensors")}
    for flag, value in zip(change[::2], change[1::2], strict=True):
        argv[flag] = value if flag in ("--model", "--width") else str(tmp_path / value)
    args = [argv.pop("--weights")] + [item for pair in argv.items() for item in pair]
    code, _, stderr = run(args, capsys)
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_export_reads_a_training_checkpoint(tmp_path, capsys):
    """The checkpoint.safetensors that `minires train` writes holds the model's weights."""
    run_dir = tmp_path / "run"
    assert main(["train", "--model", "plain20", "--epochs", "1", "--width", "4",
                 "--batch-size", "16", "--limit-batches", "2", "--no-progress",
                 "--out", str(run_dir)]) == 0
    capsys.readouterr()
    out = tmp_path / "plain20.safetensors"
    code, stdout, stderr = run([str(run_dir / "checkpoint.safetensors"), "--model", "plain20",
                                "--to", "safetensors", "--out", str(out)], capsys)
    assert code == 0, stderr
    state = load_state_dict(out)
    assert state["conv1.weight"].shape == (4, 1, 3, 3)  # MNIST, width 4: read off the weights
    assert int(state["bn1.num_batches_tracked"]) == 2  # trained: 2 steps
