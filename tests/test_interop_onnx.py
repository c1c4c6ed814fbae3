"""minires.interop.export_onnx: every model family as an ONNX file that onnx.checker
accepts and that onnx.reference.ReferenceEvaluator (and onnxruntime, when installed) runs
to minires's eval-mode logits within 1e-4 relative; BN folded and as BatchNormalization."""

import sys

import numpy as np
import pytest

import minires
from minires import interop, models
from tests.interop_models import FAMILIES, IDS, SMALL, build

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed (pip install "
                           "'minires[onnx]'; the test extra installs it)")
from onnx.reference import ReferenceEvaluator  # noqa: E402  (after the skip)

TOLERANCE = 1e-4


def relative_error(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def minires_logits(model, x):
    model.eval()
    with minires.no_grad():
        return model(minires.tensor(x)).numpy()


def op_types(path) -> set:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("fold", [True, False], ids=["folded-bn", "bn-nodes"])
@pytest.mark.parametrize(("name", "constructor", "shape"), FAMILIES, ids=IDS)
def test_exported_graph_runs_to_minires_logits(tmp_path, name, constructor, shape, fold):
    model = build(constructor, np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    path = interop.export_onnx(model, x, tmp_path / f"{name}.onnx", fold_batch_norm=fold)
    onnx.checker.check_model(str(path), full_check=True)
    assert model.training  # export ran the model in eval mode and restored the mode
    ops = op_types(path)
    assert ("BatchNormalization" in ops) == (not fold or "preact" in name), ops
    expected = minires_logits(model, x)
    got = ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
    assert got.shape == expected.shape
    error = relative_error(got, expected)
    assert error < TOLERANCE, f"reference evaluator: relative error {error:.2e}"


@pytest.mark.parametrize(("name", "constructor", "shape"),
                         [FAMILIES[0], FAMILIES[2], FAMILIES[3], FAMILIES[6], FAMILIES[8],
                          FAMILIES[12]],
                         ids=[IDS[0], IDS[2], IDS[3], IDS[6], IDS[8], IDS[12]])
def test_onnxruntime_agrees_when_installed(tmp_path, name, constructor, shape):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (optional:"
                              " pip install onnxruntime); the reference evaluator checks "
                              "the graphs above")
    model = build(constructor, np.float32)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    path = interop.export_onnx(model, x, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x})[0]
    assert relative_error(got, minires_logits(model, x)) < TOLERANCE


def test_each_piece_has_its_onnx_ops(tmp_path):
    x = np.zeros((1, 3, 16, 16), np.float32)
    option_a = op_types(interop.export_onnx(models.resnet20(**SMALL), x, tmp_path / "a.onnx"))
    assert {"Conv", "Relu", "Add", "Slice", "Pad", "GlobalAveragePool", "Flatten",
            "Gemm"} <= option_a
    option_b = op_types(interop.export_onnx(models.resnet20(shortcut="B", **SMALL), x,
                                            tmp_path / "b.onnx"))
    assert "Slice" not in option_b and "Pad" not in option_b
    highway = op_types(interop.export_onnx(models.highway20(**SMALL), x, tmp_path / "h.onnx"))
    assert {"Sigmoid", "Mul", "Sub"} <= highway
    imagenet = op_types(interop.export_onnx(models.resnet18(num_classes=3),
                                            np.zeros((1, 3, 32, 32), np.float32),
                                            tmp_path / "r.onnx"))
    assert "MaxPool" in imagenet
    graph = onnx.load(str(tmp_path / "b.onnx")).graph
    initializers = {t.name for t in graph.initializer}
    assert "fc.weight" in initializers and "layer2.0.downsample.0.weight+layer2.0." \
        "downsample.1" in initializers  # named by the state-dict keys


def test_batch_dimension_is_free_and_weights_are_float32(tmp_path):
    model = build(FAMILIES[1][1], np.float64)
    example = np.zeros((1, 3, 16, 16))
    path = interop.export_onnx(model, example, tmp_path / "m.onnx")
    x = np.random.default_rng(2).standard_normal((5, 3, 16, 16)).astype(np.float32)
    got = ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
    assert got.shape == (5, 10)
    assert relative_error(got, minires_logits(model, x.astype(np.float64))) < TOLERANCE
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert all(t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
               for t in graph.initializer)


def test_sequential_of_layers_exports(tmp_path):
    nn = minires.nn
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(),
                          nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.2),
                          nn.Linear(8, 3), nn.Sigmoid())
    x = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    path = interop.export_onnx(model, x, tmp_path / "s.onnx")
    got = ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
    assert relative_error(got, minires_logits(model, x)) < TOLERANCE


def test_failed_export_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous export")

    class Custom(minires.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="no ONNX translation"):
        interop.export_onnx(Custom(), np.zeros((1, 1, 2, 2), np.float32), path)
    assert path.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left


def test_bad_arguments(tmp_path):
    model = models.resnet20(**SMALL)
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="opset must be an int from 13"):
        interop.export_onnx(model, x, tmp_path / "m.onnx", opset=7)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        interop.export_onnx(model, np.zeros((3, 16, 16), np.float32), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="channels"):
        interop.export_onnx(model, np.zeros((1, 1, 16, 16), np.float32), tmp_path / "m.onnx")


def test_export_needs_no_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    path = interop.export_onnx(models.resnet20(**SMALL), np.zeros((1, 3, 8, 8), np.float32),
                               tmp_path / "m.onnx")
    onnx.checker.check_model(str(path))


def test_missing_onnx_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'minires\[onnx\]'"):
        interop.export_onnx(models.resnet20(**SMALL), np.zeros((1, 3, 8, 8), np.float32),
                            tmp_path / "m.onnx")
