"""minires.save / minires.load: safetensors + JSON, atomic, and never a pickle."""

import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import minires
from minires import nn, serialization
from minires.models import resnet18, resnet20
from tests.hostile_files import PlantedCommand
from tests.same_check import assert_same

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is needed "
                                        "to save (pip install safetensors)")


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


# ----------------------------------------------------------------------------- state dicts


def test_state_dict_is_plain_tensors_with_its_own_names(tmp_path):
    model = resnet20(widths=(4, 8, 16))
    state = model.state_dict()
    path = minires.save(state, tmp_path / "resnet20.safetensors")
    # Any safetensors reader sees exactly the state dict's names, dtypes and values.
    raw = safetensors_numpy.load_file(str(path))
    assert sorted(raw) == sorted(state)
    assert raw["layer1.0.bn1.num_batches_tracked"].dtype == np.int64
    loaded = minires.load(path)
    assert list(loaded) == list(state)  # the model's order, not the file's sorted one
    assert_same(dict(state), loaded)
    fresh = resnet20(widths=(4, 8, 16))
    fresh.load_state_dict(loaded)
    assert_same(dict(fresh.state_dict()), loaded)


def test_npz_state_dict_still_works(tmp_path):
    state = small_net().state_dict()
    minires.save(state, tmp_path / "w.npz")
    assert_same(dict(state), minires.load(tmp_path / "w.npz"))
    with pytest.raises(TypeError, match="flat.*safetensors"):
        minires.save({"epoch": 1, "model": state}, tmp_path / "c.npz")


@pytest.mark.torch
def test_torch_reads_our_weights_and_we_read_torch(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    ours = small_net()
    rng = np.random.default_rng(0)
    ours[1].running_mean.data[:] = rng.standard_normal(4)
    ours[1].running_var.data[:] = rng.uniform(0.5, 2, 4)
    minires.save(ours.state_dict(), tmp_path / "w.safetensors")
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2)).float()
    twin.load_state_dict(safetensors_torch.load_file(str(tmp_path / "w.safetensors")),
                         strict=True)
    ours.eval()
    twin.eval()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(minires.tensor(x)).numpy(), expected, rtol=1e-5,
                               atol=1e-6)
    # And back: torch's own file loads into minires.
    safetensors_torch.save_file(twin.state_dict(), str(tmp_path / "t.safetensors"))
    back = small_net()
    back.load_state_dict(minires.load(tmp_path / "t.safetensors"))
    assert_same(dict(ours.state_dict()), dict(back.state_dict()))


@pytest.mark.torch
def test_torchvision_resnet18_takes_our_weights(tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    minires.save(resnet18().state_dict(), tmp_path / "r18.safetensors")
    twin = torchvision.models.resnet18()
    twin.load_state_dict(safetensors_torch.load_file(str(tmp_path / "r18.safetensors")))


# ----------------------------------------------------------------------------- checkpoints


def nested_checkpoint():
    rng = np.random.default_rng(5)
    return {
        "format": "minires.train.checkpoint/1",
        "epoch": 3,
        "model": OrderedDict(small_net().state_dict()),
        "optimizer": {"state": {0: {"momentum_buffer": rng.standard_normal((4, 3, 3, 3))},
                                7: {"step": 12}},
                      "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False,
                                        "params": [0, 1, 7], "betas": (0.9, 0.999)}]},
        "rng_state": np.random.default_rng(123).bit_generator.state,  # 128-bit ints
        "history": [{"epoch": 1, "train_loss": 2.302585092994046, "test_error": None,
                     "lr": 0.1, "images_per_second": float("inf")}],
        "odd": {"nan": float("nan"), "-inf": float("-inf"), "big": -(2**70), "empty": [],
                "tuple_key": {(1, "a"): "x"}, "__dunder": 1, "np_scalars": [
                    np.float32(0.5), np.int64(-3), np.bool_(True), np.float64(1 / 3)],
                "arrays": [np.zeros((0, 3), np.float32), np.array(7, np.int32),
                           np.arange(6, dtype=np.uint8).reshape(2, 3).T,
                           np.array([True, False])],
                "collide": {"a/b": np.ones(1), "a": {"b": np.zeros(1)}}},
        "unicode": "résnet — 残差",
    }


def test_nested_checkpoint_round_trips_exactly(tmp_path):
    checkpoint = nested_checkpoint()
    path = minires.save(checkpoint, tmp_path / "checkpoint.safetensors")
    loaded = minires.load(path)
    assert_same(checkpoint, loaded)
    assert isinstance(loaded["rng_state"]["state"]["state"], int)
    generator = np.random.default_rng()
    generator.bit_generator.state = loaded["rng_state"]
    assert generator.random() == np.random.default_rng(123).random()
    # One file: arrays as tensors under path-like keys, the rest as JSON in the header.
    raw = safetensors_numpy.load_file(str(path))
    assert "model/0.weight" in raw and "optimizer/state/0/momentum_buffer" in raw
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as file:
        skeleton = json.loads(file.metadata()[serialization.SKELETON_KEY])
    assert skeleton["epoch"] == 3 and skeleton["model"]["0.weight"] == {"__array__":
                                                                      "model/0.weight"}


def test_header_length_starting_with_a_pickle_byte(tmp_path):
    # A safetensors header length is arbitrary: its low byte may be 0x80, a pickle's first
    # byte.  Such a file is still read as safetensors (found by the demo cache's keys).
    path = tmp_path / "x.safetensors"
    for padding in range(300):
        minires.save({"epoch": 1, "pad": "x" * padding, "w": np.ones(2)}, path)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert minires.load(path)["epoch"] == 1


def test_load_state_dict_from_either_file(tmp_path):
    checkpoint = nested_checkpoint()
    minires.save(checkpoint, tmp_path / "c.safetensors")
    minires.save(checkpoint["model"], tmp_path / "w.safetensors")
    for name in ("c.safetensors", "w.safetensors"):
        assert_same(dict(checkpoint["model"]),
                    serialization.load_state_dict(tmp_path / name))
    minires.save({"epoch": 1, "history": []}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="other.safetensors holds a dict.*'model' state dict"):
        serialization.load_state_dict(tmp_path / "other.safetensors")


class Opaque:
    pass


@pytest.mark.parametrize("obj, message", [
    ({"a": Opaque()}, "cannot save entry /a: a Opaque"),
    ({"a": {1, 2}}, "a set"),
    ({"w": np.array([1 + 2j])}, "dtype complex128"),
    ({"w": np.array(["text"])}, "dtype <U4"),
])
def test_unsupported_objects_are_refused(tmp_path, obj, message):
    with pytest.raises(TypeError, match=message):
        minires.save(obj, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".pth"])
def test_pickle_names_are_not_written(tmp_path, suffix):
    with pytest.raises(ValueError, match="names a pickle file.*safetensors"):
        minires.save({"w": np.ones(2)}, tmp_path / f"x{suffix}")


# ----------------------------------------------------------------------------- hostile files


@pytest.mark.parametrize("name, protocol", [("checkpoint.pkl", 4), ("weights.safetensors", 2),
                                            ("old.pkl", 0), ("model.pt", 1)])
def test_planted_pickle_is_refused_and_never_runs(tmp_path, name, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"model": PlantedCommand(marker)}, protocol=protocol))
    with pytest.raises(ValueError, match="is a pickle file.*can run any code.*convert it"):
        minires.load(path)
    assert not marker.exists()


def test_torch_zip_checkpoint_is_refused(tmp_path):
    # torch.save writes a zip holding archive/data.pkl: a pickle inside.
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(PlantedCommand(tmp_path / "pwned")))
        archive.writestr("archive/version", "3\n")
    with pytest.raises(ValueError, match="is a pickle file"):
        minires.load(path)
    assert not (tmp_path / "pwned").exists()


def _truncated(path):
    path.write_bytes(path.read_bytes()[:-7])


def _header_lies(path):
    blob = path.read_bytes()
    path.write_bytes((10**9).to_bytes(8, "little") + blob[8:])


def _bad_json(path):
    blob = bytearray(path.read_bytes())
    blob[9] = ord("!")  # break the header's JSON right after the "{"
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("damage, message", [
    (_truncated, "it is truncated: its header describes [0-9]+ bytes of tensor data, the "
                 "file holds [0-9]+"),
    (_header_lies, "header claims 1000000000 bytes"),
    (_bad_json, "safetensors could not read it"),
    (lambda p: p.write_bytes(b""), "it is empty"),
    (lambda p: p.write_bytes(b"GIF89a\x01\x00garbage"), "it starts with b'GIF89a"),
    (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "damaged zip"),
])
def test_damaged_or_foreign_files_name_the_file(tmp_path, damage, message):
    path = tmp_path / "checkpoint.safetensors"
    minires.save(nested_checkpoint(), path)
    damage(path)
    with pytest.raises(ValueError, match=message) as info:
        minires.load(path)
    assert str(path) in str(info.value) and "expected safetensors" in str(info.value)


def test_npz_with_object_arrays_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.array([Opaque()], dtype=object))  # an object array pickles inside
    with pytest.raises(ValueError, match="w.npz is not a file minires.save wrote"):
        minires.load(path)


def test_skeleton_pointing_at_a_missing_tensor(tmp_path):
    path = tmp_path / "x.safetensors"
    metadata = {serialization.FORMAT_KEY: serialization.OBJECT_FORMAT,
                serialization.SKELETON_KEY: json.dumps({"w": {"__array__": "nowhere"}})}
    path.write_bytes(safetensors_numpy.save({"a": np.ones(1)}, metadata=metadata))
    with pytest.raises(ValueError, match="bad __array__ entry 'nowhere'"):
        minires.load(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        minires.load(tmp_path / "missing.safetensors")
    with pytest.raises(IsADirectoryError):
        minires.load(tmp_path)


# ----------------------------------------------------------------------------- atomic writes


def test_failure_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    minires.save({"epoch": 1}, path)
    before = path.read_bytes()

    def interrupted(fd):  # the new bytes are written, not yet renamed into place
        raise KeyboardInterrupt("simulated kill during fsync")

    monkeypatch.setattr(serialization.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        minires.save({"epoch": 2, "w": np.ones(1000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_killed_save_leaves_previous_file_and_next_save_cleans_up(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    minires.save({"epoch": 1}, path)
    before = path.read_bytes()
    # A process killed in the middle of writing (os._exit: no cleanup handlers run).
    script = (
        "import os, sys, numpy as np\n"
        "from minires import serialization\n"
        "def half(f):\n"
        "    f.write(b'x' * 1000)\n"
        "    f.flush()\n"
        "    os._exit(9)\n"
        f"serialization.atomic_write({str(path)!r}, half)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=120)
    assert done.returncode == 9
    stale = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert len(stale) == 1 and stale[0].startswith(".checkpoint.safetensors.")
    assert path.read_bytes() == before
    assert minires.load(path) == {"epoch": 1}
    # Another file's temporary is not touched: '.checkpoint.safetensors.bak.X.tmp' belongs to
    # 'checkpoint.safetensors.bak'.
    other = tmp_path / ".checkpoint.safetensors.bak.abcd1234.tmp"
    other.write_bytes(b"")
    minires.save({"epoch": 2}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other.name])
    assert minires.load(path) == {"epoch": 2}


def test_import_minires_needs_no_safetensors(tmp_path):
    script = ("import sys; sys.modules['safetensors'] = None\n"
              "import minires\n"
              "minires.save({'w': minires.zeros(2)}, 'w.npz')\n"
              "try:\n"
              "    minires.save({'w': minires.zeros(2)}, 'w.safetensors')\n"
              "except ImportError as err:\n"
              "    print('refused:', err)\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: minires.save needs the safetensors package: pip install" in done.stdout
    assert (tmp_path / "w.npz").exists()


def test_deeply_nested_skeleton_is_refused(tmp_path):
    path = tmp_path / "deep.safetensors"
    metadata = {serialization.FORMAT_KEY: serialization.OBJECT_FORMAT,
                serialization.SKELETON_KEY: "[" * 200_000 + "]" * 200_000}
    path.write_bytes(safetensors_numpy.save({"a": np.ones(1)}, metadata=metadata))
    with pytest.raises(ValueError, match="nested too deeply"):
        minires.load(path)
