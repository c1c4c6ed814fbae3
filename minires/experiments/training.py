"""Training runs shared by the demonstrations, cached so each net is trained once.

Degradation trains plain/ResNet-20/56; the Figure-7 response analysis (identity), the
lesion study and the highway comparison look at the *same* trained nets.  A run is keyed
by everything that determines its numbers (model, its settings, seed, recipe, data
sizes); the first demonstration that needs it trains it and stores the weights and
history under ``config.out/cache/``; later ones load them.  Delete that directory (or use
a new ``--out``) to retrain.

Recipes:

* ``quick`` (default): 2,000 images of the embedded MNIST subset (the first 2,000 of its
  4,000, class-balanced; all 1,000 test images) at 28x28, CIFAR-style nets with widths
  8/16/32, 3 epochs of batch 32 (63 iterations per epoch, 189 in all), SGD lr 0.1 with
  half an epoch of linear warm-up from lr / 10, momentum 0.9, weight decay 1e-4,
  lr / 10 at 50% and 75% of training; the training set is measured in eval mode once,
  after the last epoch.  Why these sizes: the quick ``demo all`` must run in minutes
  on a 2-core CPU, and the degradation demonstration alone trains 12 nets (four
  architectures, three seeds), 56-layer ones costing ~2.5x a 20-layer one; that affords
  about 6,000 image presentations per net.  Spent as 189 steps of batch 32 rather than 47
  of the paper's 128 (per image, a step costs about the same on a CPU), they train the
  nets much further: the 20-layer nets end at 10-13% training error (mean of 3 seeds)
  where 47 steps of batch 128 leave them at 30-60%.  lr 0.1 is the paper's; the warm-up
  keeps the 56-layer nets from diverging in their first steps.
* ``full``: the paper's CIFAR-10 recipe (section 4.2): widths 16/32/64, batch 128, 64k
  iterations (about 164 epochs), lr 0.1 / 10 at 32k and 48k, pad-4 crop and flip.
* ``tiny``: the quick recipe on 1,000 training / 200 test images and widths 4/8/16, for
  the test suite (96 iterations): enough for plain-20 to leave chance level while
  plain-56 stays far behind.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minires import backend, data, serialization
from minires.experiments.common import DemoConfig, Stopwatch
from minires.functional import cross_entropy
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
    # When the training set is measured in eval mode (train_error_eval): after every
    # epoch ("epoch"), or only after the last one ("final", which saves a pass per epoch).
    eval_train: str = "epoch"

    def __post_init__(self):
        if self.eval_train not in ("epoch", "final"):
            raise ValueError(f"eval_train must be 'epoch' or 'final', got {self.eval_train!r}")


def default_recipe(config: DemoConfig) -> Recipe:
    """The recipe for ``config``'s size (tiny / quick / full) and dataset."""
    if config.mode == "full" and not config.tiny:
        return Recipe(epochs=164, widths=(16, 32, 64), warmup_epochs=0.0,
                      augment=config.dataset == "cifar10")
    return config.pick(
        tiny=Recipe(epochs=3, widths=(4, 8, 16), batch_size=32, train_size=1000,
                    test_size=200, warmup_epochs=0.5, eval_train="final"),
        quick=Recipe(epochs=3, widths=(8, 16, 32), batch_size=32, train_size=2000,
                     warmup_epochs=0.5, eval_train="final"),
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
    # Per training step, as trained (train mode): {"train_loss": [...], "train_error": [...]}
    # (None for a run cached before steps were recorded).
    steps: dict | None = None


class _StepRecorder:
    """Cross-entropy that also records every *training* batch's loss and error (train mode,
    the weights of that moment), for per-iteration curves like the paper's.  Evaluation
    passes run under ``no_grad`` and are not recorded."""

    def __init__(self):
        self.loss, self.error = [], []

    def __call__(self, logits, target):
        loss = cross_entropy(logits, target)
        if logits.requires_grad:
            xp = backend.get_array_module(logits.data)
            self.loss.append(float(loss.item()))
            self.error.append(float((xp.argmax(logits.data, axis=1) != target).mean()))
        return loss

    def as_dict(self) -> dict:
        return {"train_loss": list(self.loss), "train_error": list(self.error)}


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
    cache = Path(config.out) / "cache" / f"{key}.safetensors"
    backend.manual_seed(seed)
    model = build_model(config, name, recipe, **model_kwargs)
    if cache.exists():
        saved = serialization.load(cache)
        model.load_state_dict(saved["model"])
        model.to(config.device)
        return TrainedRun(name, model, History(saved["history"]), 0.0, key, saved.get("steps"))

    train_loader, test_loader = make_loaders(config, recipe, seed)
    optimizer, scheduler = paper_cifar_recipe(model, len(train_loader), recipe.epochs,
                                              lr=recipe.lr, warmup_epochs=recipe.warmup_epochs)
    if config.progress:
        print(f"  training {label or name} (seed {seed}, {recipe.epochs} epochs)", flush=True)
    recorder = _StepRecorder()
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      scheduler_interval="step", device=config.device,
                      progress=True if config.progress else None,
                      eval_train=recipe.eval_train == "epoch", loss_fn=recorder)
    history = trainer.fit(recipe.epochs)
    seconds = float(np.sum(history["epoch_time"]))
    if recipe.eval_train == "final":  # the same measurement, once, on the final weights
        with Stopwatch() as watch:
            eval_loader = data.DataLoader(train_loader.dataset, 500)
            loss, error = evaluate(model, eval_loader, device=config.device)
        history.records[-1].update(train_loss_eval=loss, train_error_eval=error)
        seconds += watch.seconds
    steps = recorder.as_dict()
    serialization.save({"model": model.state_dict(), "history": list(history),
                        "steps": steps}, cache)
    return TrainedRun(name, model, history, seconds, key, steps)


def test_error(config: DemoConfig, model, recipe: Recipe | None = None) -> float:
    """The model's error rate on the demo's test split (eval mode)."""
    recipe = recipe or default_recipe(config)
    _, test_loader = make_loaders(config, recipe, seed=0)
    return evaluate(model, test_loader, device=config.device)[1]


def recipe_for(config: DemoConfig):
    """The shared default recipe (so trained nets are shared through the cache with the other
    demonstrations), cut to one epoch on 320 images for the test suite (``tiny``): enough
    steps to run every line of the demonstration, not to train a net."""
    recipe = default_recipe(config)
    if config.tiny:
        recipe = dataclasses.replace(recipe, epochs=1, train_size=320, test_size=100)
    return recipe


def training_curve(run_, column: str = "train_loss"):
    """(x, y, x label) of a trained run's training curve: per iteration (a moving average
    over ~1/20 of the run) when the run recorded its steps, else per epoch."""
    steps = getattr(run_, "steps", None)
    if steps and steps.get(column):
        values = np.asarray(steps[column], dtype=np.float64)
        window = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        return np.arange(len(smooth)) + (window + 1) / 2, smooth, "iteration"
    values = np.asarray(run_.history[column], dtype=np.float64)
    return np.arange(1, len(values) + 1), values, "epoch"


def final(history, column: str, fallback: str) -> float:
    """The last epoch's ``column`` (e.g. an eval-mode training loss), or ``fallback`` when
    the history does not have it."""
    record = history[-1]
    value = record.get(column)
    return float(record[fallback] if value is None else value)
