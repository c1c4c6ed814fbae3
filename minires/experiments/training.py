"""Training runs shared by the demonstrations, cached so each net is trained once.

Degradation trains plain/ResNet-20/56; the Figure-7 response analysis (identity), the
lesion study and the highway comparison look at the *same* trained nets.  A run is keyed
by everything that determines its numbers (model, its settings, seed, recipe, data
sizes); the first demonstration that needs it trains it and stores the weights and
history under ``config.out/cache/``; later ones load them.  Delete that directory (or use
a new ``--out``) to retrain.

Recipes:

* ``quick`` (default): the embedded MNIST subset (4,000 training / 1,000 test images at
  28x28), CIFAR-style nets with widths 8/16/32, batch 128, SGD lr 0.1 with one epoch of
  linear warm-up, momentum 0.9, weight decay 1e-4, lr / 10 at 50% and 75% of training.
* ``full``: the paper's CIFAR-10 recipe (§4.2): widths 16/32/64, batch 128, 64k
  iterations (about 164 epochs), lr 0.1 / 10 at 32k and 48k, pad-4 crop and flip.
* ``tiny``: the quick recipe on fewer images and epochs, for the test suite.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minires import backend, data, serialization
from minires.experiments.common import DemoConfig
from minires.models import get_model
from minires.train import History, Trainer, evaluate, paper_cifar_recipe


@dataclass
class Recipe:
    """How a demonstration trains a net (see the module docstring for the presets)."""

    epochs: int
    widths: tuple
    batch_size: int = 128
    lr: float = 0.1
    warmup_epochs: float = 1.0
    train_size: int | None = None  # None: the whole training split
    test_size: int | None = None
    augment: bool = False


def default_recipe(config: DemoConfig) -> Recipe:
    """The recipe for ``config``'s size (tiny / quick / full) and dataset."""
    if config.mode == "full" and not config.tiny:
        return Recipe(epochs=164, widths=(16, 32, 64), warmup_epochs=0.0,
                      augment=config.dataset == "cifar10")
    return config.pick(
        tiny=Recipe(epochs=2, widths=(4, 8, 16), train_size=1000, test_size=500,
                    warmup_epochs=0.5),
        quick=Recipe(epochs=5, widths=(8, 16, 32)),
        full=None)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, split: str, data_dir: str | None):
    if name == "mnist":
        return data.load_mnist(split)
    return data.load_cifar10(data_dir, split=split)


def load_split(config: DemoConfig, split: str, size: int | None = None):
    """(images, labels) of the demo's dataset; the first ``size`` of them when given
    (the embedded MNIST split is stored class-balanced in blocks of 10, so any prefix
    that is a multiple of 10 stays balanced)."""
    images, labels = _dataset(config.dataset, split, config.data_dir)
    if size is not None:
        images, labels = images[:size], labels[:size]
    return images, labels


def make_loaders(config: DemoConfig, recipe: Recipe, seed: int):
    """Training loader (shuffled with ``seed``, augmented per recipe) and test loader."""
    x_train, y_train = load_split(config, "train", recipe.train_size)
    x_test, y_test = load_split(config, "test", recipe.test_size)
    transform = None
    if recipe.augment:
        size = x_train.shape[-1]
        transform = data.Compose([data.RandomCrop(size, padding=4),
                                  data.RandomHorizontalFlip()])
    train_loader = data.DataLoader((x_train, y_train), recipe.batch_size, shuffle=True,
                                   transform=transform, seed=seed)
    test_loader = data.DataLoader((x_test, y_test), 500)
    return train_loader, test_loader


def in_channels(config: DemoConfig) -> int:
    return 1 if config.dataset == "mnist" else 3


@dataclass
class TrainedRun:
    """A trained model with its history and the time it took (0 when loaded)."""

    name: str
    model: object
    history: History
    seconds: float
    key: str


def _run_key(name: str, seed: int, recipe: Recipe, model_kwargs: dict,
             config: DemoConfig) -> str:
    settings = {"model": name, "seed": seed, "recipe": recipe.__dict__, "dataset":
                config.dataset, "kwargs": {k: repr(v) for k, v in sorted(model_kwargs.items())}}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"{name}-seed{seed}-{digest.hexdigest()[:10]}"


def build_model(config: DemoConfig, name: str, recipe: Recipe, **model_kwargs):
    """A fresh model for the demo's dataset (10 classes, 1 or 3 input channels)."""
    kwargs = {"num_classes": 10, "in_channels": in_channels(config), "widths": recipe.widths}
    kwargs.update(model_kwargs)
    return get_model(name, **kwargs)


def train_or_load(config: DemoConfig, name: str, seed: int, recipe: Recipe | None = None,
                  label: str | None = None, **model_kwargs) -> TrainedRun:
    """Train ``name`` (a :func:`minires.models.get_model` name) with ``recipe``, or load the
    cached result of an identical earlier run.

    The seed fixes the initial weights and the data order.  ``label`` is the progress
    bar's text.  Returns a :class:`TrainedRun` whose model is on ``config.device``.
    """
    recipe = recipe or default_recipe(config)
    key = _run_key(name, seed, recipe, model_kwargs, config)
    cache = Path(config.out) / "cache" / f"{key}.pkl"
    backend.manual_seed(seed)
    model = build_model(config, name, recipe, **model_kwargs)
    if cache.exists():
        saved = serialization.load(cache)
        model.load_state_dict(saved["model"])
        model.to(config.device)
        return TrainedRun(name, model, History(saved["history"]), 0.0, key)

    train_loader, test_loader = make_loaders(config, recipe, seed)
    optimizer, scheduler = paper_cifar_recipe(model, len(train_loader), recipe.epochs,
                                              lr=recipe.lr, warmup_epochs=recipe.warmup_epochs)
    if config.progress:
        print(f"  training {label or name} (seed {seed}, {recipe.epochs} epochs)", flush=True)
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      scheduler_interval="step", device=config.device,
                      progress=True if config.progress else None, eval_train=True)
    history = trainer.fit(recipe.epochs)
    seconds = float(np.sum(history["epoch_time"]))
    serialization.save({"model": model.state_dict(), "history": list(history)}, cache)
    return TrainedRun(name, model, history, seconds, key)


def test_error(config: DemoConfig, model, recipe: Recipe | None = None) -> float:
    """The model's error rate on the demo's test split (eval mode)."""
    recipe = recipe or default_recipe(config)
    _, test_loader = make_loaders(config, recipe, seed=0)
    return evaluate(model, test_loader, device=config.device)[1]
