"""The lesion demonstration (Veit et al. 2016): deleting one block barely hurts a trained
ResNet-56 and breaks a trained plain net.

It reuses the four nets that tests/test_experiments_degradation.py trained in the same pytest
session (the same out directory and tiny recipe, so the same cache keys); run alone, it
trains them first (about half a minute more).  At tiny size the nets are far from trained
(plain-56, the degraded net, stays near chance), which is why "breaks" is measured as the
fraction of the way to chance (see minires.experiments.lesion) and why plain-20 is judged
as well.
"""

import json

import numpy as np
import pytest

from minires import data
from minires.experiments import lesion, run_demo
from minires.experiments.common import DemoConfig
from minires.models import get_model
from minires.train import evaluate


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "demos-tiny"
    config = DemoConfig(tiny=True, out=out, progress=False)
    return config, run_demo("lesion", config)


def test_tiny_lesion_claim(tiny_run):
    _, result = tiny_run
    results = result.numbers["results"]
    res_inc = lesion._increases(results["resnet56"])
    # the claim, from the measured numbers
    assert np.median(res_inc) < lesion.RESNET_MEDIAN_MAX
    for net in ("plain56", "plain20"):
        frac = lesion.toward_chance(results[net])
        assert np.median(frac) >= lesion.PLAIN_TOWARD_CHANCE
        assert np.median(frac) > 3 * np.median(lesion.toward_chance(results["resnet56"]))
    assert all(v.holds for v in result.verdicts), [(v.claim, v.evidence)
                                                   for v in result.verdicts]


def test_toward_chance():
    entry = {"baseline": 0.30, "errors": [0.30, None, 0.60, 0.90]}
    np.testing.assert_allclose(lesion._increases(entry), [0.0, 30.0, 60.0])
    np.testing.assert_allclose(lesion.toward_chance(entry), [0.0, 0.5, 1.0])
    assert np.isnan(lesion.toward_chance({"baseline": 0.895, "errors": [0.9]})).all()


def test_tiny_lesion_outputs(tiny_run):
    config, result = tiny_run
    out = config.out
    assert (out / "lesion_errors.png").stat().st_size > 10_000
    saved = json.loads((out / "lesion.json").read_text())
    assert saved["numbers"]["excluded_blocks"] == ["layer2.0", "layer3.0"]
    for net, entry in saved["numbers"]["results"].items():
        n = 9 if net.endswith("56") else 3
        assert len(entry["blocks"]) == 3 * n  # 3 stages x n blocks
        assert sum(entry["deletable"]) == 3 * n - 2
        assert [e is None for e in entry["errors"]] == [not k for k in entry["deletable"]]
    assert len(saved["verdicts"]) == 3
    section = (out / "sections" / "lesion.md").read_text()
    assert "downsampling" in section and "not deletable" in section
    assert "lesion" in (out / "report.md").read_text()


def test_lesion_errors_leave_the_model_intact():
    model = get_model("resnet20", widths=(2, 4, 8), in_channels=1, num_classes=10)
    x, y = data.load_mnist("test")
    loader = data.DataLoader((x[:40], y[:40]), 20)
    before = evaluate(model, loader)
    config = DemoConfig(tiny=True, progress=False)
    entry = lesion.lesion_errors(config, model, loader, "resnet20")
    assert entry["blocks"][:3] == ["layer1.0", "layer1.1", "layer1.2"]
    assert entry["deletable"] == [True, True, True, False, True, True, False, True, True]
    assert entry["baseline"] == pytest.approx(before[1])
    assert evaluate(model, loader) == before  # without_block copies; the model is unchanged
    assert all(0 <= e <= 1 for e in entry["errors"] if e is not None)
