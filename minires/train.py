"""Training loop, evaluation, history and resumable checkpoints.

::

    optimizer, scheduler = paper_cifar_recipe(model, len(train_loader), epochs=164)
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      scheduler_interval="step", checkpoint_path="run/checkpoint.safetensors",
                      history_path="run/history.json")
    history = trainer.fit(164)  # or fit(164, resume_from="run/checkpoint.safetensors")
    history["test_error"]              # one value per epoch

**What the curves measure.**  The training loss and error of an epoch are those of the
mini-batches *as they were trained on*: running means over the epoch's batches, computed in
train mode (BatchNorm using batch statistics, augmentation on) with the weights of that
moment, which change after every batch.  This is how the training curves of He et al.
(2016) are drawn, and it is free (no second pass over the data).  The test loss and error
come from :func:`evaluate` at the end of the epoch: eval mode, fixed weights.  Pass
``eval_train=True`` to also measure the training set the same way (``train_loss_eval``,
``train_error_eval``).

**Reproducibility.**  A checkpoint written at the end of an epoch holds everything the rest
of the run depends on: the model's parameters and buffers, the optimizer's state (momentum
buffers), the scheduler's step count, minires's random generator and the data loaders'
positions.  Resuming from it and training to epoch N gives *exactly* the numbers and weights
of an uninterrupted N-epoch run (CuPy's own generator, used only by dropout on the GPU, is not
saved).

**Checkpoint files** are safetensors (see :mod:`minires.serialization`): the arrays as
tensors, everything else as JSON in the header; loading one never runs code.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections import deque
from pathlib import Path

from minires import backend, serialization
from minires.autograd import Tensor, no_grad
from minires.data.loader import DataLoader
from minires.functional import cross_entropy
from minires.optim import SGD, LinearLR, MultiStepLR, SequentialLR

__all__ = [
    "CHECKPOINT_FORMAT",
    "History",
    "Trainer",
    "TrainingDiverged",
    "evaluate",
    "paper_cifar_recipe",
]

CHECKPOINT_FORMAT = "minires.train.checkpoint/1"
SCHEDULER_INTERVALS = ("epoch", "step")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (usually: the learning rate is too large).

    Attributes: ``epoch`` (1-based), ``step`` (1-based batch within the epoch, or ``None``
    when found at the end of the epoch), ``losses`` (the last few training losses, the bad
    one last).
    """

    def __init__(self, message: str, epoch: int, step: int | None, losses: list):
        super().__init__(message)
        self.epoch, self.step, self.losses = epoch, step, list(losses)


# ---------------------------------------------------------------------------- evaluation


def _module_modes(model) -> list:
    return [(module, module.training) for module in model.modules()]


def _restore_modes(modes: list) -> None:
    for module, training in modes:
        object.__setattr__(module, "training", training)


def _count_errors(logits, target) -> int:
    """Number of samples whose highest logit is not the target class.

    logits (N, K) array, target (N,) integer array, same device.
    """
    xp = backend.get_array_module(logits, target)
    return int((xp.argmax(logits, axis=1) != target).sum())


def evaluate(model, loader, device="cpu", loss_fn=cross_entropy) -> tuple[float, float]:
    """Mean loss and error rate of ``model`` over every batch of ``loader``.

    Runs in eval mode (BatchNorm uses its running statistics) under :func:`no_grad`, then
    puts every submodule back in the mode it was in.  ``loader`` yields ``(x, y)`` with
    x (B, C, H, W) and y (B,) integer labels; batches are moved to ``device``.

    Returns ``(loss, error)``: ``loss = sum_b B_b * loss_b / N`` (the per-sample mean when
    ``loss_fn`` averages over its batch, as cross-entropy does) and
    ``error = #{argmax_k logits_nk != y_n} / N`` in [0, 1], over all N samples.
    """
    modes = _module_modes(model)
    model.eval()
    total_loss, errors, samples = 0.0, 0, 0
    try:
        with no_grad():
            for x, y in loader:
                x, y = backend.to_device(x, device), backend.to_device(y, device)
                logits = model(Tensor(x))
                total_loss += float(loss_fn(logits, y).item()) * len(y)
                errors += _count_errors(logits.data, y)
                samples += len(y)
    finally:
        _restore_modes(modes)
    if samples == 0:
        raise ValueError("evaluate: the loader yielded no samples; expected at least one batch")
    return total_loss / samples, errors / samples


# ---------------------------------------------------------------------------- history


def _plain(value):
    """NumPy scalars -> Python numbers, so records are JSON-serialisable."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class History:
    """Per-epoch records of a training run: a list of dicts, one per epoch.

    Columns written by :class:`Trainer`: ``epoch``, ``iterations`` (optimizer steps so far),
    ``train_loss``, ``train_error`` (measured during training, in train mode),
    ``test_loss``, ``test_error`` (with a test loader), ``train_loss_eval``,
    ``train_error_eval`` (with ``eval_train``), ``lr`` (group 0's learning rate at the
    epoch's last step; ``lr_1``, ``lr_2``, ... for further groups), ``epoch_time`` (seconds,
    training and evaluation) and ``images_per_second`` (training loop only).  Errors are
    fractions in [0, 1].

    ``history["test_error"]`` is a column (one value per epoch, ``None`` where a record lacks
    it), ``history[-1]`` a record, ``len(history)`` the number of epochs.
    """

    #: Columns that depend on the machine's speed, not on the computation.
    TIMING_COLUMNS = ("epoch_time", "images_per_second")

    def __init__(self, records=None):
        self.records: list[dict] = [dict(r) for r in (records or [])]

    def append(self, record: dict) -> None:
        self.records.append({k: _plain(v) for k, v in record.items()})

    @property
    def columns(self) -> list:
        """Every column name, in the order first seen."""
        names = {}
        for record in self.records:
            names.update(dict.fromkeys(record))
        return list(names)

    def __getitem__(self, key):
        if isinstance(key, str):
            if self.records and key not in self.columns:
                raise KeyError(f"no column {key!r} in the history; columns are {self.columns}")
            return [record.get(key) for record in self.records]
        return self.records[key]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, columns {self.columns})"

    def without_timing(self) -> list:
        """The records without :attr:`TIMING_COLUMNS`: equal for two runs of the same
        computation (used to check that a resumed run matches an uninterrupted one)."""
        return [{k: v for k, v in r.items() if k not in self.TIMING_COLUMNS}
                for r in self.records]

    def to_json(self, path) -> Path:
        """Write the records as a JSON list of objects, atomically."""
        text = json.dumps(self.records, indent=1)
        return serialization.atomic_write(path, lambda f: f.write(text.encode("utf-8")))

    def to_csv(self, path) -> Path:
        """Write one row per epoch (header: :attr:`columns`; empty cells for missing
        values), atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for record in self.records:
            writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
        text = buffer.getvalue()
        return serialization.atomic_write(path, lambda f: f.write(text.encode("utf-8")))

    @classmethod
    def from_json(cls, path) -> History:
        """Read what :meth:`to_json` wrote."""
        with open(path, encoding="utf-8") as file:
            records = json.load(file)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{path}: expected a JSON list of per-epoch objects (as written "
                             f"by History.to_json), got {type(records).__name__}")
        return cls(records)


# ---------------------------------------------------------------------------- recipe


def paper_cifar_recipe(model, iterations_per_epoch: int, epochs: int, lr: float = 0.1,
                       warmup_epochs: float = 0):
    """The CIFAR-10 recipe of He et al. (2016), scaled to ``epochs``.

    SGD with ``lr`` (0.1), momentum 0.9 and weight decay 1e-4; the rate is divided by 10 at
    50% and at 75% of the ``T = iterations_per_epoch * epochs`` iterations (the paper's 32k
    and 48k of 64k).  With ``warmup_epochs`` > 0 the first ``W`` iterations ramp the rate
    linearly from ``lr / 10`` to ``lr`` (the paper warms ResNet-110 up at 0.01)::

        lr(t) = lr * (0.1 + 0.9 * t / W)            for t < W
        lr(t) = lr * 0.1 ** #{m in (T/2, 3T/4): m <= t}   after

    Returns ``(optimizer, scheduler)``; step the scheduler once per *iteration*
    (``Trainer(..., scheduler_interval="step")``).
    """
    if iterations_per_epoch < 1 or epochs < 1:
        raise ValueError(f"iterations_per_epoch and epochs must be at least 1, got "
                         f"{iterations_per_epoch} and {epochs}")
    total = iterations_per_epoch * epochs
    milestones = [round(0.5 * total), round(0.75 * total)]
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = round(warmup_epochs * iterations_per_epoch)
    if warmup < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if warmup == 0:
        return optimizer, MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if warmup > milestones[0]:
        raise ValueError(
            f"warm-up of {warmup_epochs} epochs ({warmup} iterations) would outlast the first "
            f"learning-rate decay at 50% of training (iteration {milestones[0]} of {total}); "
            "train for more epochs or use a shorter warm-up")
    ramp = LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=warmup)
    # As in PyTorch, the decay scheduler counts its steps from the switch at `warmup`.
    decay = MultiStepLR(optimizer, milestones=[m - warmup for m in milestones], gamma=0.1)
    return optimizer, SequentialLR(optimizer, [ramp, decay], milestones=[warmup])


# ---------------------------------------------------------------------------- trainer


class Trainer:
    """Train a classifier epoch by epoch, recording a :class:`History`.

    Each epoch: in train mode, for every batch ``(x, y)`` of ``train_loader``: move it to
    ``device``, ``loss = loss_fn(model(x), y)``, ``optimizer.zero_grad()``,
    ``loss.backward()``, ``optimizer.step()`` and, with ``scheduler_interval="step"``,
    ``scheduler.step()``.  The epoch's training loss and error are running means over its
    batches as trained (train mode, weights changing): how the paper draws its curves.  Then
    the test set is measured with :func:`evaluate`, the scheduler is stepped (with
    ``scheduler_interval="epoch"``), the record is appended to :attr:`history`, and the
    checkpoint and history files are written.

    Args:
        model: a :class:`minires.nn.Module` returning logits (B, K).  It is moved to
            ``device`` here (in place, a no-op when it is already there), so the optimizer
            may be built before or after.
        optimizer: e.g. :class:`minires.optim.SGD` over ``model.parameters()``.
        train_loader: yields ``(x (B, ...), y (B,))``; a :class:`DataLoader` (its position
            is checkpointed).
        test_loader: optional, measured at the end of every epoch.
        scheduler: optional learning-rate scheduler of ``optimizer``.
        scheduler_interval: ``"epoch"`` (step the scheduler after each epoch) or ``"step"``
            (after each iteration, as the paper's recipe does).
        device: ``"cpu"`` or ``"cuda"``; batches are moved with ``backend.to_device``.
        checkpoint_path: when set, a checkpoint (safetensors + JSON, conventionally
            ``checkpoint.safetensors``) is written there atomically at the end of every
            epoch (see :meth:`checkpoint`).
        history_path: when set, the history is written after every epoch as JSON to this
            path with suffix ``.json`` and as CSV with suffix ``.csv``.
        progress: ``True``: a tqdm bar over each epoch's batches (postfix: loss, error, lr)
            when tqdm is installed, else one line per epoch; ``False``: one line per epoch;
            ``None``: silent.
        eval_train: also evaluate the training set in eval mode each epoch (costs a pass).
        loss_fn: ``loss_fn(logits, y) -> scalar Tensor``, the mean over the batch.
        config: a small dict of extra settings stored in the checkpoint (e.g. the CLI's).

    Raises :class:`TrainingDiverged` as soon as a loss is NaN or infinite; the checkpoint
    on disk is then still that of the last good epoch.
    """

    def __init__(self, model, optimizer, train_loader, test_loader=None, scheduler=None,
                 scheduler_interval: str = "epoch", device="cpu", checkpoint_path=None,
                 history_path=None, progress=True, eval_train: bool = False,
                 loss_fn=cross_entropy, config: dict | None = None):
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"scheduler_interval must be one of {SCHEDULER_INTERVALS}, got "
                             f"{scheduler_interval!r}")
        if scheduler is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
            raise ValueError("the scheduler belongs to a different optimizer than the trainer's")
        suffix = None if checkpoint_path is None else Path(checkpoint_path).suffix
        if suffix == ".npz" or suffix in serialization.PICKLE_SUFFIXES:
            raise ValueError(f"checkpoint_path {checkpoint_path} ends in {suffix}; use a "
                             ".safetensors path (a training checkpoint is saved as safetensors "
                             "+ JSON; .npz holds only a flat state dict, and minires writes no "
                             "pickles)")
        if progress not in (True, False, None):
            raise ValueError(f"progress must be True, False or None, got {progress!r}")
        self.device = backend.check_device(device)
        self.model = model.to(self.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.train_loader, self.test_loader = train_loader, test_loader
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.history_path = None if history_path is None else Path(history_path)
        self.progress, self.eval_train, self.loss_fn = progress, eval_train, loss_fn
        self.config = dict(config or {})
        self.history = History()
        self.epoch = 0  # epochs completed
        self.iteration = 0  # optimizer steps taken
        self._train_eval_loader = None

    # ------------------------------------------------------------------ running
    def fit(self, epochs: int, resume_from=None) -> History:
        """Train until ``epochs`` epochs are complete in total and return the history.

        ``epochs`` counts from the start of the run, not from now: after resuming at epoch
        3, ``fit(10)`` trains epochs 4..10.  ``resume_from``: a checkpoint path to
        :meth:`resume` from first.
        """
        if resume_from is not None:
            self.resume(resume_from)
        while self.epoch < epochs:
            self._train_epoch(epochs)
        return self.history

    def _learning_rates(self) -> list:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _open_bar(self, total_epochs: int):
        if self.progress is not True:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        total = len(self.train_loader) if hasattr(self.train_loader, "__len__") else None
        return tqdm(total=total, desc=f"epoch {self.epoch + 1}/{total_epochs}", unit="batch",
                    dynamic_ncols=True, leave=True)

    def _diverged(self, step, losses, what: str) -> TrainingDiverged:
        epoch = self.epoch + 1
        where = f"epoch {epoch}, step {step}" if step is not None else f"the end of epoch {epoch}"
        kept = ""
        if self.checkpoint_path is not None and self.epoch > 0:
            kept = (f" The checkpoint {self.checkpoint_path} was not overwritten: it holds "
                    f"epoch {self.epoch}.")
        elif self.checkpoint_path is not None:
            kept = " No epoch completed, so no checkpoint was written."
        shown = ", ".join(f"{v:.4g}" for v in losses)
        message = (f"training diverged at {where}: {what}; last training losses [{shown}]."
                   f"{kept} Try a smaller learning rate (now {self._learning_rates()}) or a "
                   "warm-up.")
        return TrainingDiverged(message, epoch, step, losses)

    def _train_epoch(self, total_epochs: int) -> dict:
        model, optimizer = self.model, self.optimizer
        modes = _module_modes(model)
        model.train()
        start = time.perf_counter()
        total_loss, errors, samples, step = 0.0, 0, 0, 0
        recent = deque(maxlen=5)
        lrs = self._learning_rates()
        bar = self._open_bar(total_epochs)
        try:
            for step, (x, y) in enumerate(self.train_loader, start=1):
                x, y = backend.to_device(x, self.device), backend.to_device(y, self.device)
                logits = model(Tensor(x))
                loss = self.loss_fn(logits, y)
                value = float(loss.item())
                recent.append(value)
                if not math.isfinite(value):
                    raise self._diverged(step, recent, f"the loss is {value}")
                optimizer.zero_grad()
                loss.backward()
                lrs = self._learning_rates()
                optimizer.step()
                self.iteration += 1
                if self.scheduler is not None and self.scheduler_interval == "step":
                    self.scheduler.step()
                total_loss += value * len(y)
                errors += _count_errors(logits.data, y)
                samples += len(y)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({"loss": f"{total_loss / samples:.4f}",  # a dict keeps
                                     "error": f"{errors / samples:.2%}",  # this order
                                     "lr": f"{lrs[0]:.3g}"}, refresh=False)
            if samples == 0:
                raise ValueError("the training loader yielded no batches; expected at least one")
            train_time = time.perf_counter() - start
            record = {"epoch": self.epoch + 1, "iterations": self.iteration,
                      "train_loss": total_loss / samples, "train_error": errors / samples}
            if self.test_loader is not None:
                record["test_loss"], record["test_error"] = evaluate(
                    model, self.test_loader, self.device, self.loss_fn)
            if self.eval_train:
                record["train_loss_eval"], record["train_error_eval"] = evaluate(
                    model, self._train_eval(), self.device, self.loss_fn)
            self._check_finite(record, recent)
            record["lr"] = lrs[0]
            for i, lr in enumerate(lrs[1:], start=1):
                record[f"lr_{i}"] = lr
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            record["epoch_time"] = time.perf_counter() - start
            record["images_per_second"] = samples / train_time if train_time > 0 else math.inf
            self.epoch += 1
            self.history.append(record)
            if self.checkpoint_path is not None:
                serialization.save(self.checkpoint(), self.checkpoint_path)
            if self.history_path is not None:
                self.history.to_json(self.history_path.with_suffix(".json"))
                self.history.to_csv(self.history_path.with_suffix(".csv"))
            self._report(record, total_epochs, bar)
        finally:
            if bar is not None:
                bar.close()
            _restore_modes(modes)
        return record

    def _check_finite(self, record: dict, recent) -> None:
        """Raise TrainingDiverged if a measured loss or any parameter is NaN/infinite (the
        last optimizer step of an epoch can break the weights after the last loss)."""
        for key in ("train_loss", "test_loss", "train_loss_eval"):
            if key in record and not math.isfinite(record[key]):
                raise self._diverged(None, recent, f"{key} is {record[key]}")
        for name, p in self.model.named_parameters():
            xp = backend.get_array_module(p.data)
            if not bool(xp.isfinite(p.data).all()):
                raise self._diverged(None, recent, f"parameter {name} has NaN/inf entries")

    def _train_eval(self):
        """The training set in a fixed order without augmentation (for ``eval_train``)."""
        if self._train_eval_loader is None:
            loader = self.train_loader
            if not isinstance(loader, DataLoader):
                raise TypeError("eval_train needs the train loader to be a DataLoader")
            # An explicit seed: drawing one from minires's generator would change the run.
            self._train_eval_loader = DataLoader(loader.dataset, loader.batch_size, seed=0)
        return self._train_eval_loader

    def _report(self, record: dict, total_epochs: int, bar) -> None:
        parts = [f"train loss {record['train_loss']:.4f} error {record['train_error']:.2%}"]
        if "test_error" in record:
            parts.append(f"test loss {record['test_loss']:.4f} error {record['test_error']:.2%}")
        if "train_error_eval" in record:
            parts.append(f"train (eval mode) error {record['train_error_eval']:.2%}")
        if bar is not None:  # the bar's last state becomes the epoch's summary line
            postfix = {"loss": f"{record['train_loss']:.4f}",
                       "error": f"{record['train_error']:.2%}", "lr": f"{record['lr']:.3g}"}
            if "test_error" in record:
                postfix["test_error"] = f"{record['test_error']:.2%}"
            bar.set_postfix(postfix)
        elif self.progress is not None:
            print(f"epoch {record['epoch']}/{total_epochs}  " + "  ".join(parts) +
                  f"  lr {record['lr']:.3g}  {record['epoch_time']:.1f} s  "
                  f"{record['images_per_second']:.0f} img/s", file=sys.stdout, flush=True)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict:
        """Everything needed to continue the run exactly (a dict of plain values/arrays)."""
        config = {"model": type(self.model).__name__,
                  "num_parameters": self.model.num_parameters(),
                  "optimizer": type(self.optimizer).__name__,
                  "scheduler": type(self.scheduler).__name__ if self.scheduler else None,
                  "scheduler_interval": self.scheduler_interval, "device": self.device,
                  **self.config}
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng_state": backend.get_rng_state(),
            "train_loader": _loader_state(self.train_loader),
            "test_loader": _loader_state(self.test_loader),
            "history": [dict(r) for r in self.history.records],
            "config": config,
        }

    def resume(self, checkpoint_path) -> int:
        """Restore the state saved in ``checkpoint_path``; returns its epoch.

        The trainer must be built as the saved one was (same architecture, optimizer and
        scheduler types, loaders with the same dataset size and batch size); otherwise a
        KeyError/ValueError says what differs.
        """
        state = serialization.load(checkpoint_path)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint_path} is not a minires training checkpoint "
                             f"(expected format {CHECKPOINT_FORMAT!r})")
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ValueError(
                f"{checkpoint_path} was saved " + ("without" if state["scheduler"] is None
                                                   else "with") +
                " a learning-rate scheduler, but this trainer has " +
                ("one" if self.scheduler is not None else "none"))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        backend.set_rng_state(state["rng_state"])
        for loader, saved in ((self.train_loader, state["train_loader"]),
                              (self.test_loader, state["test_loader"])):
            if saved is not None and hasattr(loader, "load_state_dict"):
                loader.load_state_dict(saved)
        self.history = History(state["history"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        return self.epoch


def _loader_state(loader):
    return loader.state_dict() if hasattr(loader, "state_dict") else None
