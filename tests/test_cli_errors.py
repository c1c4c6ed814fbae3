"""User errors on the command line: ``error: ...`` on stderr, exit code 2, no traceback, and
before any training when the mistake can be known then.  A divergence exits 1."""

import os
import pickle
import subprocess
import sys

import pytest

import minires
from minires import serialization
from minires.__main__ import main
from tests.hostile_files import PlantedCommand

pytest.importorskip("safetensors", reason="the train command writes safetensors checkpoints")

SMOKE = ["train", "--model", "resnet20", "--width", "4", "--limit-batches", "2",
         "--batch-size", "16", "--no-progress"]
NO_CUPY = pytest.mark.skipif(minires.is_cuda_available(),
                             reason="CuPy and a GPU are present: --device cuda is valid here")


def run_main(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, out, err, *phrases):
    assert code == 2, (out, err)
    assert err.startswith("error: "), err
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    assert "epoch 1/" not in out  # nothing was trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An --out holding a one-epoch run."""
    out = tmp_path_factory.mktemp("run")
    assert main(SMOKE + ["--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("width", ["0", "-3"])
def test_width_must_be_positive(tmp_path, capsys, width):
    out = tmp_path / "run"
    code, stdout, err = run_main(SMOKE[:3] + ["--width", width, "--epochs", "1", "--out",
                                              str(out)], capsys)
    assert_user_error(code, stdout, err, "--width must be at least 1", width)
    assert not out.exists()


def copy_run(trained, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.safetensors", "history.json", "history.csv"):
        (out / name).write_bytes((trained / name).read_bytes())
    return out


@pytest.mark.parametrize("damage, phrase", [
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "it is truncated"),
    (lambda p: p.write_bytes(b"\x00" * 64), "is not a file minires.save wrote"),
    (lambda p: p.write_bytes(b"<html>not a checkpoint</html>"), "it starts with"),
    (lambda p: serialization.save({"w": minires.zeros(3)}, p), "not a minires training"),
])
def test_damaged_checkpoint_on_resume(trained, tmp_path, capsys, damage, phrase):
    out = copy_run(trained, tmp_path)
    damage(out / "checkpoint.safetensors")
    code, stdout, err = run_main(SMOKE + ["--epochs", "2", "--out", str(out), "--resume"],
                                 capsys)
    assert_user_error(code, stdout, err, "--resume", "checkpoint.safetensors", phrase)


def test_planted_pickle_checkpoint_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    for name in ("checkpoint.safetensors", "checkpoint.pkl"):
        out = tmp_path / name.replace(".", "-")
        out.mkdir()
        (out / name).write_bytes(pickle.dumps({"model": PlantedCommand(marker)}))
        code, stdout, err = run_main(SMOKE + ["--epochs", "2", "--out", str(out),
                                              "--resume"], capsys)
        assert_user_error(code, stdout, err, "pickle", "can run")
        assert not marker.exists()


def test_resume_to_an_epoch_already_reached(trained, tmp_path, capsys):
    out = copy_run(trained, tmp_path)
    for epochs in ("1", "0"):
        code, stdout, err = run_main(SMOKE + ["--epochs", epochs, "--out", str(out),
                                              "--resume"], capsys)
        assert code == 2 and err.startswith("error: ")
    code, stdout, err = run_main(SMOKE + ["--epochs", "1", "--out", str(out), "--resume"],
                                 capsys)
    assert_user_error(code, stdout, err, "already at epoch 1", "--epochs above 1")


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unwritable_out_fails_before_training(tmp_path, capsys, where):
    if where == "proc":
        if not os.path.isdir("/proc/self"):
            pytest.skip("no /proc on this system")
        out = "/proc/minires-test/run"
    else:
        (tmp_path / "file").write_text("a file, not a directory")
        out = str(tmp_path / "file" / "run")
    for command in (SMOKE + ["--epochs", "1"], ["demo", "vanishing", "--no-progress"]):
        code, stdout, err = run_main(command + ["--out", out], capsys)
        assert_user_error(code, stdout, err, f"--out {out} is not writable")


def test_full_disk_during_training(tmp_path, capsys, monkeypatch):
    def no_space(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serialization, "atomic_write", no_space)
    code, stdout, err = run_main(SMOKE + ["--epochs", "1", "--out", str(tmp_path)], capsys)
    assert code == 2 and "could not write to" in err and "No space left" in err


@NO_CUPY
@pytest.mark.parametrize("command", [SMOKE + ["--epochs", "1"], ["demo", "vanishing"],
                                     ["demo", "degradation"], ["demo", "all"]])
def test_cuda_without_cupy_in_every_command(tmp_path, capsys, command):
    out = tmp_path / "out"
    code, stdout, err = run_main(command + ["--device", "cuda", "--out", str(out)], capsys)
    assert_user_error(code, stdout, err, "--device cuda", "CuPy")
    assert not out.exists()


@pytest.mark.parametrize("command", [SMOKE + ["--epochs", "1"], ["demo", "degradation"]])
def test_cifar10_without_the_data(tmp_path, capsys, command):
    out = tmp_path / "out"
    code, stdout, err = run_main(command + ["--dataset", "cifar10", "--data-dir",
                                            str(tmp_path / "nowhere"), "--out", str(out)],
                                 capsys)
    assert_user_error(code, stdout, err, "CIFAR-10 not found")
    assert not out.exists()


def test_cifar10_not_the_official_files(tmp_path, capsys):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"labels": []}))
    code, stdout, err = run_main(["demo", "degradation", "--dataset", "cifar10", "--data-dir",
                                  str(tmp_path / "data"), "--out", str(tmp_path / "o")],
                                 capsys)
    assert_user_error(code, stdout, err, "not the official file", "md5")


# ------------------------------------------------------------------ real processes


def run_cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "minires", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_no_traceback_in_a_real_process(trained, tmp_path):
    out = copy_run(trained, tmp_path)
    (out / "checkpoint.safetensors").write_bytes(b"\x80\x04truncated")
    for args, code in ([SMOKE[:3] + ["--width", "0", "--epochs", "1"], 2],
                       [SMOKE + ["--epochs", "2", "--out", str(out), "--resume"], 2]):
        done = run_cli(args, tmp_path)
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr and "error: " in done.stderr


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_exits_1_without_traceback(tmp_path):
    done = run_cli(SMOKE + ["--epochs", "1", "--lr", "1e30", "--out", str(tmp_path / "r")],
                   tmp_path)
    assert done.returncode == 1, done.stderr
    assert "error: training diverged at epoch 1" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command, argv, says", [
    ("train", SMOKE + ["--epochs", "1"], "the files in --out hold the last completed epoch"),
    ("demo", ["demo", "identity"], "--out holds the demonstrations that finished"),
    ("grade", ["grade", "subs", "--csv", "t.csv"], "--csv and --json are written only"),
    ("export", ["export", "w.safetensors", "--model", "resnet20", "--to", "onnx", "--out",
                "m.onnx"], "nothing was written"),
    ("check", ["check", "im2col"], None),
    ("quickstart", ["quickstart"], None),
])
def test_ctrl_c_says_what_this_command_left(monkeypatch, capsys, command, argv, says):
    import minires.__main__ as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, {"grade": "grade_submissions"}.get(command, command), interrupted)
    code, _, err = run_main(argv, capsys)
    assert code == 130 and err.startswith("error: interrupted"), err
    if says is None:  # nothing written: no talk of --out
        assert err.strip() == "error: interrupted"
    else:
        assert says in err
        assert ("--out" in err) == (command in ("train", "demo"))
