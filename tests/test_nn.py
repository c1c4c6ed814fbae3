"""minires.nn: Module bookkeeping, state dicts, layers, initialisation, saving."""

import math
import os

import numpy as np
import pytest

import minires
import minires.nn as nn
from minires import serialization
from minires.gradcheck import gradcheck


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.layer1(self.bn1(self.conv1(x)).relu())
        return self.fc(x.mean(axis=(2, 3)))


def test_registration_and_names_follow_torchvision():
    net = TinyNet()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.weight",
                     "layer1.0.bias", "fc.weight", "fc.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"]
    assert [n for n, _ in net.named_modules()][:4] == ["", "conv1", "bn1", "layer1"]
    assert len(list(net.children())) == 4
    assert net.num_parameters() == 4 * 9 + 4 + 4 + 4 * 4 * 9 + 4 + 4 * 3 + 3


def test_module_without_super_init_says_so():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_train_eval_propagates_and_changes_batch_norm():
    net = TinyNet()
    x = minires.randn(2, 1, 5, 5)
    net.eval()
    assert not net.bn1.training and not net.layer1[1].training
    before = net.bn1.running_mean.numpy().copy()
    net(x)
    np.testing.assert_array_equal(net.bn1.running_mean.numpy(), before)
    net.train()
    net(x)
    assert not np.array_equal(net.bn1.running_mean.numpy(), before)
    assert int(net.bn1.num_batches_tracked.item()) == 1


def test_backward_reaches_every_parameter_and_zero_grad_clears():
    net = TinyNet()
    loss = minires.functional.cross_entropy(net(minires.randn(3, 1, 4, 4)), np.array([0, 1, 2]))
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_whole_network_gradcheck_float64():
    with minires.default_dtype(np.float64):
        net = TinyNet()
    x = minires.tensor(np.random.default_rng(0).standard_normal((3, 1, 4, 4)),
                       requires_grad=True)
    params = list(net.parameters())

    def forward(x, *_params):
        return net(x)

    gradcheck(forward, x, *params).assert_ok()


def test_state_dict_round_trip_and_strict_errors(tmp_path):
    net, other = TinyNet(), TinyNet()
    state = net.state_dict()
    assert list(state)[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    other.load_state_dict(state)
    for (name, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items(),
                                 strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)

    broken = dict(state)
    del broken["fc.bias"]
    broken["fc.extra"] = np.zeros(1)
    with pytest.raises(KeyError) as info:
        other.load_state_dict(broken)
    assert "fc.bias" in str(info.value) and "fc.extra" in str(info.value)
    missing, unexpected = other.load_state_dict(broken, strict=False)
    assert missing == ["fc.bias"] and unexpected == ["fc.extra"]

    wrong = dict(state)
    wrong["fc.weight"] = np.zeros((5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"fc.weight.*\(5, 4\).*\(3, 4\)"):
        other.load_state_dict(wrong)


def test_save_load_npz_is_atomic(tmp_path, monkeypatch):
    net = TinyNet()
    path = tmp_path / "model.npz"
    serialization.save(net.state_dict(), path)
    saved = path.read_bytes()
    loaded = serialization.load(path)
    assert set(loaded) == set(net.state_dict())

    # An interrupted save (failure while writing) must leave the old file untouched.
    def explode(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(KeyboardInterrupt):
        serialization.save(net.state_dict(), path)
    assert path.read_bytes() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        serialization.load(tmp_path / "missing.npz")


def test_save_load_nested_checkpoint(tmp_path):
    checkpoint = {"epoch": 3, "model": TinyNet().state_dict(), "history": [1.0, 0.5]}
    serialization.save(checkpoint, tmp_path / "ckpt.safetensors")
    loaded = serialization.load(tmp_path / "ckpt.safetensors")
    assert loaded["epoch"] == 3 and loaded["history"] == [1.0, 0.5]
    with pytest.raises(TypeError, match="flat"):
        serialization.save(checkpoint, tmp_path / "ckpt.npz")
    assert not os.path.exists(tmp_path / "ckpt.npz")


def test_repr_looks_like_pytorch():
    text = repr(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.ReLU()))
    assert text == ("Sequential(\n"
                    "  (0): Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), "
                    "bias=False)\n"
                    "  (1): ReLU()\n"
                    ")")


def test_layer_input_errors_are_clear():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"expects 3 channels.*\(1, 4, 5, 5\)"):
        conv(minires.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"4-D.*\(3, 5, 5\)"):
        conv(minires.randn(3, 5, 5))
    with pytest.raises(ValueError, match="expects 4 channels"):
        nn.BatchNorm2d(4)(minires.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(3)(minires.randn(1, 3))
    with pytest.raises(ValueError, match="5 features"):
        nn.Linear(5, 2)(minires.randn(2, 4))


def test_default_init_matches_pytorch_bounds():
    minires.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert np.abs(conv.weight.numpy()).max() <= bound
    assert np.abs(conv.weight.numpy()).max() > 0.9 * bound
    w = nn.Parameter(np.zeros((64, 16, 3, 3), dtype=np.float32))
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    nn.init.xavier_uniform_(w)
    assert np.abs(w.numpy()).max() <= math.sqrt(6 / (16 * 9 + 64 * 9))
    nn.init.constant_(w, 0.5)
    assert (w.numpy() == 0.5).all()
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.init.calculate_gain("swish")


@pytest.mark.torch
def test_batchnorm2d_running_stats_match_torch_over_steps(torch):
    ours = nn.BatchNorm2d(3, momentum=0.2)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    ours.to(dtype=np.float64)
    rng = np.random.default_rng(5)
    for _ in range(4):
        x = rng.standard_normal((4, 3, 5, 2)) * 3 + 1
        np.testing.assert_allclose(ours(minires.tensor(x)).numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(),
                               rtol=1e-12)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 5, 2))
    np.testing.assert_allclose(ours(minires.tensor(x)).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10)
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_forward_hooks_see_outputs_and_can_be_removed():
    net = TinyNet()
    seen = []
    handle = net.bn1.register_forward_hook(lambda m, inputs, out: seen.append(out.shape))
    net(minires.randn(2, 1, 3, 3))
    assert seen == [(2, 4, 3, 3)]
    handle.remove()
    net(minires.randn(2, 1, 3, 3))
    assert len(seen) == 1
    with net.fc.register_forward_hook(lambda m, i, out: out * 0):
        assert (net(minires.randn(2, 1, 3, 3)).numpy() == 0).all()
    assert (net(minires.randn(2, 1, 3, 3)).numpy() != 0).any()


# ------------------------------------------------------------------------ dtypes, zero sizes


def test_parameter_and_input_dtypes_must_match_with_one_wording():
    x64 = minires.tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)))
    layers = {"conv2d": (nn.Conv2d(3, 2, 1), x64), "linear": (nn.Linear(4, 2), x64),
              "batch_norm": (nn.BatchNorm2d(3), x64)}
    messages = []
    for op, (layer, x) in layers.items():
        with pytest.raises(TypeError) as info:
            layer(x)
        messages.append(str(info.value).replace(op, "OP"))
        assert str(info.value).startswith(f"{op}: input dtype float64 does not match the "
                                          "parameters' dtype float32 (weight)")
    assert len(set(messages)) == 1  # one check, one wording
    # the other way round, and an integer input, too
    with pytest.raises(TypeError, match="float32 does not match .* float64"):
        nn.Linear(3, 2).to(dtype="float64")(minires.randn(2, 3))
    with pytest.raises(TypeError, match="floating-point.*int64"):
        nn.Linear(2, 2)(minires.tensor([[1, 2]]))
    with pytest.raises(TypeError, match="running_mean"):
        nn.BatchNorm2d(3, affine=False).eval()(x64)
    assert nn.Linear(4, 2).to(dtype="float64")(x64).dtype == np.float64  # matching: fine


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_zero_sized_layers_build_as_in_torch(torch):
    torch_nn = torch.nn
    for ours, theirs, x_shape in [
        (nn.Linear(0, 2), torch_nn.Linear(0, 2), (3, 0)),
        (nn.Linear(2, 0), torch_nn.Linear(2, 0), (3, 2)),
    ]:
        assert ours.weight.shape == tuple(theirs.weight.shape)
        y = ours(minires.zeros(*x_shape))
        assert y.shape == tuple(theirs(torch.zeros(*x_shape)).shape)
    assert not nn.Linear(0, 2).bias.numpy().any()  # bound 0, as torch
    conv = nn.Conv2d(0, 4, 3)  # no input channels: the output is the bias
    assert conv.weight.shape == (4, 0, 3, 3)
    y = conv(minires.zeros(2, 0, 5, 5))
    assert y.shape == (2, 4, 3, 3) and not y.numpy().any()
    for layer in (nn.Conv2d(3, 0, 3), nn.BatchNorm2d(0)):
        assert layer.weight.shape[0] == 0  # builds, as torch; running it says why not
    with pytest.raises(ValueError, match="out_channels must be >= 1"):
        nn.Conv2d(3, 0, 3)(minires.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        nn.BatchNorm2d(0)(minires.zeros(2, 0, 3, 3))


@pytest.mark.parametrize("build, argument", [
    (lambda: nn.Conv2d(3, 4, 0), "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), "stride"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), "padding"),
    (lambda: nn.Conv2d(3, 4, 3, dilation=0), "dilation"),
    (lambda: nn.Conv2d(-1, 4, 3), "in_channels"),
    (lambda: nn.Conv2d(3, 2.5, 3), "out_channels"),
    (lambda: nn.Conv2d(3, 4, (3, 3, 3)), "kernel_size"),
    (lambda: nn.Linear(-1, 2), "in_features"),
    (lambda: nn.Linear(2, "3"), "out_features"),
    (lambda: nn.BatchNorm2d(-1), "num_features"),
    (lambda: nn.MaxPool2d(0)(minires.zeros(1, 1, 4, 4)), "kernel_size"),
    (lambda: nn.AvgPool2d(2, stride=-1)(minires.zeros(1, 1, 4, 4)), "stride"),
])
def test_bad_layer_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()


def test_init_leaves_zero_element_tensors_alone():
    for shape in [(4, 0, 3, 3), (0, 3, 3, 3), (0, 0)]:
        w = nn.Parameter(np.zeros(shape, dtype=np.float32))
        for fill in (nn.init.kaiming_normal_, nn.init.kaiming_uniform_,
                     nn.init.xavier_uniform_, nn.init.xavier_normal_):
            assert fill(w) is w
    w = nn.Parameter(np.zeros((0, 3, 3, 3), dtype=np.float32))
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")  # fan_out 0: no error


def test_zero_width_conv_builds_and_says_why_it_cannot_run():
    from minires import models

    conv = nn.Conv2d(3, 0, 3)  # a zero-sized layer can be built, as in torch
    with pytest.raises(ValueError, match="out_channels"):
        conv(minires.randn(2, 3, 8, 8))
    # A model refuses a zero width at once, naming its own argument.
    with pytest.raises(ValueError, match=r"widths must be positive integers, got \(0, 16, 32\)"):
        models.get_model("resnet20", num_classes=10, widths=(0, 16, 32))
