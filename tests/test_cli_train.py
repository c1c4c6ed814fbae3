"""The ``python -m minires train`` command, run in-process through ``main([...])``."""

import json

import pytest

from minires import serialization
from minires.__main__ import main

try:
    import minires.models  # noqa: F401
except ImportError as err:  # written in parallel; the command needs it
    pytest.skip(f"minires.models is not importable yet ({err}), so the train command cannot "
                "build a model", allow_module_level=True)

SMOKE = ["train", "--model", "resnet20", "--width", "4", "--limit-batches", "3",
         "--batch-size", "32", "--no-progress"]


def test_train_writes_files_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SMOKE + ["--epochs", "1", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"history.json", "history.csv",
                                               "checkpoint.safetensors"}
    printed = capsys.readouterr().out
    assert "final (epoch 1): train error" in printed and "test error" in printed
    assert len(json.loads((out / "history.json").read_text())) == 1

    # Without --resume, an existing run is not overwritten.
    assert main(SMOKE + ["--epochs", "2", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err

    assert main(SMOKE + ["--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    records = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["iterations"] == 6
    checkpoint = serialization.load(out / "checkpoint.safetensors")
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["model"] == "resnet20"
    assert (out / "history.csv").read_text().count("\n") == 3  # header + 2 rows

    # Resuming with other settings is refused, naming them.
    assert main(SMOKE[:-3] + ["--batch-size", "16", "--epochs", "3", "--out", str(out),
                              "--resume"]) == 2
    assert "--batch-size 32 (now 16)" in capsys.readouterr().err


def test_unknown_model_lists_valid_names(tmp_path, capsys):
    assert main(["train", "--model", "resnet21", "--epochs", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "resnet21" in err and "resnet20" in err and "plain56" in err


def test_missing_cifar_directory(tmp_path, capsys):
    code = main(["train", "--model", "resnet20", "--epochs", "1", "--dataset", "cifar10",
                 "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_without_checkpoint(tmp_path, capsys):
    assert main(SMOKE + ["--epochs", "1", "--out", str(tmp_path), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
