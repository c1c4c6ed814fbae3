"""minires.models: ``summary`` (shapes, parameters, multiply-adds) and the model registry."""

import numpy as np
import pytest

import minires
import minires.models as models
import minires.nn as nn
from minires.models import MODEL_NAMES, get_model, layer_macs, summary


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.relu(self.relu(self.bn(self.conv(x))))  # relu called twice
        return self.fc(self.pool(x).flatten(1))


def test_hand_counted_macs_params_and_rows():
    lines = []
    info = summary(Tiny(), (3, 10, 10), print_fn=lines.append)
    assert [row.name for row in info.layers] == ["conv", "bn", "relu", "relu", "pool", "fc"]
    assert info.layers[0].output_shape == (8, 5, 5)
    assert info.layers[-1].output_shape == (5,)
    # conv: C_out OH OW C_in KH KW = 8 * 5 * 5 * 3 * 3 * 3; fc: 8 * 5.  BN/ReLU: 0.
    assert info.macs == 8 * 5 * 5 * 27 + 8 * 5
    assert [row.macs for row in info.layers[1:5]] == [0, 0, 0, 0]
    assert info.total_params == (8 * 27 + 8) + 16 + (40 + 5) == info.trainable_params
    assert sum(row.params for row in info.layers) == info.total_params  # shared ReLU once
    assert len(lines) == 1 and "conv" in lines[0] and "total params" in lines[0]
    assert str(info) == lines[0]


def test_trainable_params_and_batch_dimension_is_ignored():
    model = Tiny()
    model.fc.weight.requires_grad = False
    info = summary(model, (4, 3, 10, 10), print_fn=None)
    assert info.input_shape == (3, 10, 10)
    assert info.trainable_params == info.total_params - 40


def test_summary_restores_modes_records_no_graph_and_removes_hooks():
    model = models.resnet20(widths=(4, 8, 8))
    model.train()
    model.layer2.eval()  # a mixed state must come back exactly
    state = minires.backend.get_rng_state()
    running = model.bn1.running_mean.numpy().copy()
    summary(model, (3, 8, 8), print_fn=None)
    assert model.training and model.layer1.training and not model.layer2[0].bn1.training
    assert all(not m._forward_hooks for m in model.modules())
    np.testing.assert_array_equal(model.bn1.running_mean.numpy(), running)
    assert int(model.bn1.num_batches_tracked.item()) == 0
    assert minires.backend.get_rng_state() == state  # the input is zeros, not a draw


def test_resnet20_macs_and_a_leaf_model():
    info = summary(models.resnet20(), (3, 32, 32), print_fn=None)
    assert info.total_params == 269_722
    assert round(info.macs / 1e6, 1) == 40.6  # the commonly quoted ~41M for ResNet-20
    assert summary(nn.Linear(6, 4), (6,), print_fn=None).macs == 24


def test_layer_macs_formula():
    conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    assert layer_macs(conv, (32, 8, 8)) == 32 * 8 * 8 * 16 * 9
    assert layer_macs(nn.ReLU(), (32, 8, 8)) == 0


def test_registry_builds_every_name():
    assert {"resnet20", "plain56", "preact_resnet20", "highway20", "resnet18",
            "resnet1202", "resnet152"} <= set(MODEL_NAMES)
    assert set(models.CIFAR_MODEL_NAMES) | set(models.IMAGENET_MODEL_NAMES) == set(MODEL_NAMES)
    for name in models.CIFAR_MODEL_NAMES:
        if name == "resnet1202":  # built in test_models_cifar (0.4 s)
            continue
        model = get_model(name, num_classes=7, in_channels=1, widths=(2, 4, 4))
        assert isinstance(model, models.CifarResNet) and model.fc.out_features == 7
    for name in models.IMAGENET_MODEL_NAMES:
        assert hasattr(models.imagenet, name) and not hasattr(models.cifar, name)
    model = get_model("ResNet-20", num_classes=10, in_channels=1, widths=(8, 16, 32))
    assert model.conv1.in_channels == 1 and model.widths == (8, 16, 32)
    with pytest.raises(ValueError, match="unknown model 'resnet21'.*resnet20"):
        get_model("resnet21")


def test_compact_view_groups_rows_by_stage_and_keeps_the_totals():
    model = get_model("resnet20", in_channels=1, widths=(4, 8, 16))
    full = summary(model, (1, 28, 28), print_fn=None)
    lines = []
    info = summary(model, (1, 28, 28), print_fn=lines.append, depth=1)
    assert info.layers == full.layers  # the rows are kept; only the printed view changes
    stages = info.stages(1)
    assert [st.name for st in stages] == ["conv1", "bn1", "relu", "layer1", "layer2",
                                          "layer3", "avgpool", "fc"]
    assert sum(st.params for st in stages) == info.total_params
    assert sum(st.macs for st in stages) == info.macs
    assert sum(st.calls for st in stages) == len(info.layers)
    layer2 = stages[4]
    assert layer2.type == "Sequential (3 BasicBlock)" and layer2.output_shape == (8, 14, 14)
    assert layer2.macs == sum(r.macs for r in info.layers if r.name.startswith("layer2."))
    text = lines[0]
    assert len(text.splitlines()) == 2 + 8 + 1 + 4  # header, rows, rule, totals
    assert f"total params:     {info.total_params:,}" in text and "Sequential" in text
    blocks = info.stages(2)
    assert [st.name for st in blocks][3:6] == ["layer1.0", "layer1.1", "layer1.2"]
    assert "PadShortcut" in blocks[6].type  # layer2.0 downsamples through option A
    with pytest.raises(ValueError, match="depth"):
        summary(model, (1, 28, 28), print_fn=None, depth=0)


def test_a_second_call_of_a_layer_is_marked_in_the_full_table():
    info = summary(Tiny(), (3, 10, 10), print_fn=None)
    assert [row.call for row in info.layers] == [1, 1, 1, 2, 1, 1]
    assert "relu [call 2]" in info.table() and info.table().count("relu [call") == 1
