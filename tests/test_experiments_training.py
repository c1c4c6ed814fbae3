"""The demonstrations' shared training runs: planned runs, the cache, and training them in
parallel worker processes before the demonstrations run."""

import dataclasses
import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from minires.experiments import common, planned_runs
from minires.experiments.training import (
    Recipe,
    RunSpec,
    default_recipe,
    load_split,
    pretrain,
    train_spec,
)

TINY = Recipe(epochs=1, widths=(2, 2, 2), batch_size=16, train_size=48, test_size=20,
              warmup_epochs=0.0, eval_train="final", downsample=2)


def test_run_spec_is_keyed_like_train_or_load(tmp_path):
    config = common.DemoConfig(tiny=True, out=tmp_path, progress=False)
    a = RunSpec.of("resnet20", 3, TINY, label="one", shortcut="B")
    b = RunSpec.of("resnet20", 3, TINY, label="another label", shortcut="B")
    assert a.cache_file(config) == b.cache_file(config)  # the label is not part of the key
    assert RunSpec.of("resnet20", 4, TINY).cache_file(config) != a.cache_file(config)
    assert RunSpec.of("resnet20", 3, TINY).cache_file(config) != a.cache_file(config)
    run_ = train_spec(config, a)
    assert a.cache_file(config).exists() and run_.key == a.cache_file(config).stem
    assert train_spec(config, b).seconds == 0.0  # loaded, not trained again


def test_pretrain_in_workers_equals_training_in_process(tmp_path):
    """Two nets trained in two spawned workers (one BLAS thread each) are bit-identical to
    the same runs trained here at one BLAS thread."""
    specs = [RunSpec.of("plain20", 0, TINY), RunSpec.of("resnet20", 1, TINY)]
    parallel = common.DemoConfig(tiny=True, out=tmp_path / "parallel", progress=False)
    assert pretrain(parallel, specs + specs[:1], jobs=2) == 2  # duplicates trained once
    assert pretrain(parallel, specs, jobs=2) == 0  # all cached now
    here = common.DemoConfig(tiny=True, out=tmp_path / "here", progress=False)
    for spec in specs:
        loaded = train_spec(parallel, spec)
        assert loaded.seconds == 0.0
        with threadpool_limits(1):
            trained = train_spec(here, spec)
        assert trained.seconds > 0
        for name, value in trained.model.state_dict().items():
            np.testing.assert_array_equal(loaded.model.state_dict()[name], value, err_msg=name)
        assert loaded.steps == trained.steps


def test_pretrain_with_one_job_leaves_training_to_the_demonstrations(tmp_path):
    config = common.DemoConfig(tiny=True, out=tmp_path, progress=False)
    assert pretrain(config, [RunSpec.of("plain20", 0, TINY)], jobs=1) == 0
    assert not (tmp_path / "cache").exists()


def test_planned_runs_are_what_the_demonstrations_train(tmp_path):
    """Every demonstration that trains nets declares them; their recipes are the shared
    one (or the tests' cut of it), so the cache is shared across demonstrations."""
    config = common.DemoConfig(tiny=True, out=tmp_path, progress=False)
    specs = planned_runs(["degradation", "identity", "shortcuts", "lesion", "highway"], config)
    names = {spec.name for spec in specs}
    assert {"plain20", "plain56", "resnet20", "resnet56", "highway20"} <= names
    keys = {spec.cache_file(config) for spec in specs}
    assert len(keys) < len(specs)  # shared nets appear in several demonstrations
    assert planned_runs(["vanishing"], config) == []


def test_load_split_is_at_the_recipes_resolution():
    config = common.DemoConfig(tiny=True)
    factor = default_recipe(config).downsample
    images, labels = load_split(config, "test", 20)
    assert images.shape == (20, 1, 28 // factor, 28 // factor)
    full = load_split(config, "test", 20, downsample=1)[0]
    assert full.shape == (20, 1, 28, 28)
    np.testing.assert_allclose(images[0, 0, 0, 0], full[0, 0, :factor, :factor].mean(),
                               rtol=1e-6)
    assert dataclasses.replace(TINY, downsample=1).downsample == 1


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_demo_jobs_must_be_positive(jobs, tmp_path, capsys):
    from minires.__main__ import main

    assert main(["demo", "vanishing", "--jobs", jobs, "--out", str(tmp_path)]) == 2
    assert "error: --jobs must be at least 1" in capsys.readouterr().err


def test_demo_writes_how_the_whole_run_went(tmp_path, capsys):
    """run.json: the whole run's wall time and jobs (the demonstrations' own JSON files do
    not count nets trained beforehand); vanishing trains no nets, so none are pretrained."""

    from minires.__main__ import main

    assert main(["demo", "vanishing", "--jobs", "2", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["demos"] == ["vanishing"] and run["jobs"] == 2
    assert run["nets_pretrained"] == 0 and run["seconds"] > 0
    assert "trained" not in capsys.readouterr().out.split("==")[0]
