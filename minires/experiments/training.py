"""Training runs shared by the demonstrations, cached so each net is trained once.

Degradation trains plain/ResNet-20/56; the Figure-7 response analysis (identity), the
lesion study and the highway comparison look at the *same* trained nets.  A run is keyed
by everything that determines its numbers (model, its settings, seed, recipe, data
sizes); the first demonstration that needs it trains it and stores the weights and
history under ``config.out/cache/``; later ones load them.  Delete that directory (or use
a new ``--out``) to retrain.

Recipes:

* ``quick`` (default): 2,000 images of the embedded MNIST subset (the first 2,000 of its
  4,000, class-balanced; all 1,000 test images) averaged down to 14x14
  (:func:`minires.data.downsample`), CIFAR-style nets with widths 8/16/32, 10 epochs of
  batch 32 (63 iterations per epoch, 630 in all), SGD lr 0.1 with one epoch of linear
  warm-up from lr / 10 (as the paper warms up ResNet-110), momentum 0.9, weight decay
  1e-4, lr / 10 at 50% and 75% of training; the training set is measured in eval mode
  once, after the last epoch.  Why these sizes: the paper compares nets *at convergence*,
  and the quick ``demo all`` must still run in minutes on a 2-core CPU.  At 14x14 a step
  costs a quarter of the arithmetic of 28x28, which buys 630 steps per net: ResNet-20's
  training loss has flattened by the last epochs (the degradation report shows it), every
  ResNet ends below 2% training error, and plain-56 still sits far above plain-20.
* ``full``: the paper's CIFAR-10 recipe (section 4.2): widths 16/32/64, batch 128, 64k
  iterations (about 164 epochs), lr 0.1 / 10 at 32k and 48k, pad-4 crop and flip.
* ``tiny``: 3 epochs on 1,000 training / 200 test images at 14x14 and widths 4/8/16, for
  the test suite (96 iterations): enough to run every line, not to converge.

With ``jobs`` > 1, :func:`pretrain` trains the nets that the demonstrations are going to
ask for in that many worker processes (one BLAS thread each) before they run; the
demonstrations then load them from the cache.  A net trained in a worker is the same as one
trained in the demonstration's own process at one BLAS thread.
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
from minires.experiments.common import DemoConfig, Stopwatch, progress
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
    downsample: int = 1  # average factor x factor pixel blocks (2: MNIST at 14x14)
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
                    test_size=200, warmup_epochs=0.5, eval_train="final", downsample=2),
        quick=Recipe(epochs=10, widths=(8, 16, 32), batch_size=32, train_size=2000,
                     warmup_epochs=1.0, eval_train="final", downsample=2),
        full=None)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, split: str, data_dir: str | None, factor: int):
    if name == "mnist":
        images, labels = data.load_mnist(split)
    else:
        images, labels = data.load_cifar10(data_dir, split=split)
    return data.downsample(images, factor), labels


def load_split(config: DemoConfig, split: str, size: int | None = None,
               downsample: int | None = None):
    """(images, labels) of the demo's dataset at the resolution its nets are trained on
    (``downsample``, by default ``default_recipe(config).downsample``); the first ``size``
    of them when given (the embedded MNIST split is stored class-balanced in blocks of 10,
    so any prefix that is a multiple of 10 stays balanced)."""
    if downsample is None:
        downsample = default_recipe(config).downsample
    images, labels = _dataset(config.dataset, split, config.data_dir, downsample)
    if size is not None:
        images, labels = images[:size], labels[:size]
    return images, labels


def make_loaders(config: DemoConfig, recipe: Recipe, seed: int):
    """Training loader (shuffled with ``seed``, augmented per recipe) and test loader."""
    x_train, y_train = load_split(config, "train", recipe.train_size, recipe.downsample)
    x_test, y_test = load_split(config, "test", recipe.test_size, recipe.downsample)
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


def _cache_file(config: DemoConfig, key: str) -> Path:
    """Where the run with cache key ``key`` is stored."""
    return Path(config.out) / "cache" / f"{key}.safetensors"


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
    cache = _cache_file(config, key)
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


@dataclass(frozen=True)
class RunSpec:
    """One training run a demonstration will ask :func:`train_or_load` for: declared before
    it runs (its ``planned_runs(config)``), so :func:`pretrain` can train them in parallel."""

    name: str
    seed: int
    recipe: Recipe | None = None
    label: str | None = None
    kwargs: tuple = ()  # the model settings, as sorted (name, value) pairs

    @classmethod
    def of(cls, name: str, seed: int, recipe: Recipe | None = None, label: str | None = None,
           **model_kwargs) -> RunSpec:
        return cls(name, seed, recipe, label, tuple(sorted(model_kwargs.items())))

    def cache_file(self, config: DemoConfig) -> Path:
        recipe = self.recipe or default_recipe(config)
        return _cache_file(config, _run_key(self.name, self.seed, recipe, dict(self.kwargs),
                                            config))

    def cost(self) -> float:
        """Relative training cost, to start the longest runs first: the depth, x2 for
        highway nets (their gates are a third convolution per block)."""
        depth = int("".join(ch for ch in self.name if ch.isdigit()) or 20)
        return depth * (2.0 if self.name.startswith("highway") else 1.0)


def train_spec(config: DemoConfig, spec: RunSpec) -> TrainedRun:
    """:func:`train_or_load` of ``spec``."""
    return train_or_load(config, spec.name, spec.seed, spec.recipe, spec.label,
                         **dict(spec.kwargs))


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _limit_blas_threads() -> None:
    """Worker initialiser: one BLAS thread per worker process (the workers are the
    parallelism; more threads would only contend for the same cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment the pool was started with says 1 already
        return
    threadpool_limits(1)


def _train_in_worker(config: DemoConfig, spec: RunSpec) -> float:
    return train_spec(dataclasses.replace(config, progress=False), spec).seconds


def pretrain(config: DemoConfig, specs, jobs: int) -> int:
    """Train the runs of ``specs`` that are not cached yet in ``jobs`` worker processes
    (spawned, one BLAS thread each), longest first; return how many were trained.

    With ``jobs`` <= 1 (or nothing to train) it does nothing: the demonstrations train
    what they need themselves, as they go.  Spawned workers import the calling script
    again, so a script that calls this needs the usual ``if __name__ == "__main__":``
    guard (``python -m minires demo`` and notebooks need nothing).
    """
    todo, seen = [], set()
    for spec in specs:
        path = spec.cache_file(config)
        if path not in seen and not path.exists():
            seen.add(path)
            todo.append(spec)
    if jobs <= 1 or not todo:
        return 0
    import concurrent.futures
    import multiprocessing
    import os

    todo.sort(key=RunSpec.cost, reverse=True)
    jobs = min(jobs, len(todo))
    if config.progress:
        print(f"  training {len(todo)} nets in {jobs} processes (1 BLAS thread each)",
              flush=True)
    # Spawned workers read these when they load NumPy: 1 thread even without threadpoolctl.
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    os.environ.update({name: "1" for name in BLAS_THREAD_VARIABLES})
    try:
        pool = concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit_blas_threads)
        with pool:
            futures = [pool.submit(_train_in_worker, config, spec) for spec in todo]
            finished = concurrent.futures.as_completed(futures)
            for future in progress(finished, "pretraining", config.progress, len(futures)):
                future.result()  # a worker's exception is raised here
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return len(todo)


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


def run_numbers(run_, curve: str = "train_loss") -> dict:
    """What a demonstration keeps of a trained run, JSON-able: the final training loss and
    error (the eval-mode pass over the training set when recorded, else the last epoch's
    train-mode values), the last test error, whether it was trained now (not loaded), its
    cache key, and its training curve ``{"x": [...], curve: [...], "unit": "iteration" or
    "epoch"}`` (:func:`training_curve` of column ``curve``)."""
    history = run_.history
    x, y, unit = training_curve(run_, curve)
    return {"train_loss": final(history, "train_loss_eval", "train_loss"),
            "train_error": final(history, "train_error_eval", "train_error"),
            "test_error": float(history[-1]["test_error"]),
            "trained_now": run_.seconds > 0, "cache_key": run_.key,
            "curve": {"x": x.tolist(), curve: y.tolist(), "unit": unit}}
