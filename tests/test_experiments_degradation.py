"""The degradation demonstration: plain-56 trains worse than plain-20 (He et al. 2016, Fig. 1).

The tiny run trains the four nets (plain-20/56, ResNet-20/56 at widths 4/8/16) with the
tiny recipe of :func:`minires.experiments.training.default_recipe` (1,000 MNIST images,
3 epochs of batch 32: 96 SGD steps) for one seed.  Why that is enough to see degradation:
in 96 steps plain-20 leaves chance level while plain-56, same recipe and seed, hardly
moves.  Measured training errors (train mode, last epoch), plain-20 vs plain-56: seed 0
46.9% vs 83.1%, seed 1 57.9% vs 77.9%, seed 2 52.5% vs 67.3%: a gap of 15-36 points, i.e.
150+ of the 1,000 training images, far outside run-to-run noise; the seed is fixed, so the
test is deterministic.  Whether ResNet-56 beats ResNet-20 depends on the training length
(see the demonstration's notes) and is not asserted here.

The out directory is shared with tests/test_experiments_lesion.py (same pytest session), so
the lesion test reuses the ResNet-56 and plain-56 trained here instead of training them
again; it still trains them itself when run alone.
"""

import json

import numpy as np
import pytest

from minires.experiments import degradation, run_demo
from minires.experiments.common import DemoConfig, DemoResult
from minires.experiments.training import Recipe, TrainedRun, default_recipe
from minires.train import History


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "demos-tiny"
    config = DemoConfig(tiny=True, out=out, progress=False)
    return config, run_demo("degradation", config)


def _verdict(result: DemoResult, start: str):
    found = [v for v in result.verdicts if v.claim.startswith(start)]
    assert len(found) == 1, [v.claim for v in result.verdicts]
    return found[0]


def test_tiny_degradation_plain56_trains_worse_than_plain20(tiny_run):
    _, result = tiny_run
    final = result.numbers["final"]
    p20, p56 = final["plain20"][0], final["plain56"][0]
    # the claim, from the measured numbers: higher training error, both measures
    assert p56["train_error"] > p20["train_error"]
    assert p56["train_error_eval"] > p20["train_error_eval"]
    assert _verdict(result, "Degradation").holds
    # ... and higher test error: not overfitting
    assert p56["test_error"] > p20["test_error"]
    assert _verdict(result, "Not overfitting").holds
    # the shortcuts fix the 56-layer net
    r56 = final["resnet56"][0]
    assert r56["train_error"] < p56["train_error"]
    assert _verdict(result, "ResNet-56 trains better than plain-56").holds


def test_tiny_degradation_outputs(tiny_run):
    config, result = tiny_run
    out = config.out
    assert (out / "degradation_curves.png").stat().st_size > 10_000
    assert result.figures == ["degradation_curves.png"]
    data = json.loads((out / "degradation.json").read_text())
    assert data["name"] == "degradation" and len(data["verdicts"]) == 4
    assert data["numbers"]["seeds"] == [config.seed]
    params = data["numbers"]["parameters"]
    assert params["plain20"] == params["resnet20"] and params["plain56"] == params["resnet56"]
    recipe = default_recipe(config)
    for net in degradation.NETS:
        run = data["numbers"]["runs"][f"{net}/seed{config.seed}"]
        assert len(run["history"]) == recipe.epochs
        per_epoch = run["history"][0]["iterations"]
        assert len(run["steps"]["train_error"]) == recipe.epochs * per_epoch
    section = (out / "sections" / "degradation.md").read_text()
    assert "train mode" in section and "eval mode" in section
    assert "degradation" in (out / "report.md").read_text()
    # every net came from the shared cache or was trained once
    assert len(list((out / "cache").glob("*.safetensors"))) >= 4


def test_seeds_and_smoothing():
    assert degradation.seeds_for(DemoConfig(tiny=True, seed=4)) == [4]
    assert degradation.seeds_for(DemoConfig(seed=4)) == [4, 5, 6]
    assert degradation.seeds_for(DemoConfig(mode="full", seed=4)) == [4]
    smooth = degradation._smooth([1.0, 3.0, 5.0, 7.0], 2)
    np.testing.assert_allclose(smooth, [1.0, 2.0, 4.0, 6.0])


class _Params:
    def __init__(self, n):
        self.n = n

    def num_parameters(self):
        return self.n


def _fake_run(net, seed, train, evaluated, test):
    records = [{"epoch": 1, "iterations": 4, "train_loss": 1.0, "train_error": train + 0.1,
                "train_loss_eval": 1.0, "train_error_eval": evaluated + 0.1,
                "test_loss": 1.0, "test_error": test + 0.1, "epoch_time": 1.0},
               {"epoch": 2, "iterations": 8, "train_loss": 0.5, "train_error": train,
                "train_loss_eval": 0.5, "train_error_eval": evaluated, "test_loss": 0.5,
                "test_error": test, "epoch_time": 1.0}]
    steps = {"train_loss": [1.0] * 8, "train_error": list(np.linspace(0.9, train, 8))}
    params = 20 if net.endswith("20") else 56
    return TrainedRun(net, _Params(params), History(records), 2.0, f"{net}-{seed}", steps)


def test_verdicts_follow_the_numbers(tmp_path):
    """The verdicts are computed: with plain-56 *better* than plain-20 they say so."""
    config = DemoConfig(tiny=True, out=tmp_path, progress=False)
    recipe = Recipe(epochs=2, widths=(4, 8, 16))
    seeds = [0, 1]
    errors = {"plain20": 0.30, "plain56": 0.20, "resnet20": 0.10, "resnet56": 0.15}
    runs = {(net, s): _fake_run(net, s, e, e, e + 0.02) for net, e in errors.items()
            for s in seeds}
    result = DemoResult("degradation", "t", "c", "s", setup="")
    degradation._report(result, config, recipe, seeds, runs)
    assert not _verdict(result, "Degradation").holds
    assert not _verdict(result, "Not overfitting").holds
    assert not _verdict(result, "ResNet-56 trains at least as well").holds
    assert _verdict(result, "ResNet-56 trains better than plain-56").holds
    comparison = result.numbers["comparisons"]["plain56_minus_plain20"]["train_error"]
    assert comparison["mean_difference"] == pytest.approx(-0.10)
    assert comparison["seeds_holding"] == 0
    # the figure is drawn from the same runs
    assert degradation._plot(config, runs, seeds, recipe) == "degradation_curves.png"
    assert (tmp_path / "degradation_curves.png").exists()
