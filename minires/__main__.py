"""Command line: ``python -m minires COMMAND``.  Run with ``--help`` for the commands."""

import argparse
import json
import os
import sys
import time

import numpy as np

from minires.experiments.common import DEMO_ORDER


def quickstart(args) -> int:
    """Train a tiny two-layer network with raw autograd and print the falling loss."""
    import minires

    minires.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    # Two interleaved half-moons: not linearly separable, so the hidden layer matters.
    n = 256
    angle = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.stack([np.cos(angle) + label, np.sin(angle) * (1 - 2 * label) + 0.5 * label], 1)
    x = minires.tensor(x + 0.1 * rng.standard_normal(x.shape), dtype="float32")
    target = minires.tensor(label[:, None], dtype="float32")

    w1 = minires.tensor(rng.standard_normal((2, 32)) * 0.7, dtype="float32", requires_grad=True)
    b1 = minires.zeros(32, requires_grad=True)
    w2 = minires.tensor(rng.standard_normal((32, 1)) * 0.2, dtype="float32", requires_grad=True)
    b2 = minires.zeros(1, requires_grad=True)
    params = [w1, b1, w2, b2]
    for step in range(args.steps + 1):
        p = ((x @ w1 + b1).relu() @ w2 + b2).sigmoid().clip(1e-6, 1 - 1e-6)
        loss = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
        for param in params:
            param.zero_grad()
        loss.backward()
        with minires.no_grad():
            for param in params:
                param.data -= args.lr * param.grad.data
        if step % max(args.steps // 10, 1) == 0:
            accuracy = float(((p.numpy() > 0.5) == (target.numpy() > 0.5)).mean())
            print(f"step {step:4d}  loss {loss.item():.4f}  accuracy {accuracy:.3f}")
    return 0


def _build_model(name: str, width: int, in_channels: int, num_classes: int):
    """``minires.models.get_model`` with widths (w, 2w, 4w); a bad name or setting becomes a
    clear error (an unknown name lists the valid ones)."""
    from minires import models

    try:
        return models.get_model(name, widths=(width, 2 * width, 4 * width),
                                in_channels=in_channels, num_classes=num_classes)
    except (ValueError, TypeError) as err:
        message = str(err)
        if "known models" not in message:  # a known name that --width does not fit
            cifar = [n for n in models.MODEL_NAMES if not hasattr(models.imagenet, n)]
            message += f"; the train command builds the CIFAR-style models: {', '.join(cifar)}"
        raise _CommandError(f"cannot build model {name!r}: {message}") from err


class _CommandError(Exception):
    """A mistake in the command line or its files: printed as ``error: ...``, exit code 2."""


def _load_data(args):
    """(train, test, train transform) for ``args.dataset``; train and test are pairs
    (images (N, C, H, W), labels (N,))."""
    from minires import data

    if args.dataset == "mnist":
        train, test, transform = data.load_mnist("train"), data.load_mnist("test"), None
    else:
        try:
            train = data.load_cifar10(args.data_dir, "train")
            test = data.load_cifar10(args.data_dir, "test")
        except (FileNotFoundError, ValueError) as err:  # absent, or not the official files
            raise _CommandError(str(err)) from err
        # The paper's augmentation: pad 4, random 32x32 crop, random horizontal flip.
        transform = data.Compose([data.RandomCrop(32, padding=4), data.RandomHorizontalFlip()])
    if args.limit_batches is not None:  # smoke tests: a prefix of each split
        n = args.limit_batches * args.batch_size
        train, test = (train[0][:n], train[1][:n]), (test[0][:n], test[1][:n])
    return train, test, transform


def _check_device(device: str) -> str:
    """The normalised device name; ``cuda`` without a usable CuPy is a command error."""
    from minires import backend

    try:
        return backend.check_device(device)
    except (ValueError, RuntimeError, ImportError) as err:
        raise _CommandError(f"--device {device}: {err}") from err


def _check_writable(out) -> None:
    """Create ``out`` and write and delete a probe file there, so that an unwritable
    output directory fails now rather than after the first epoch."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".minires-probe-"):
            pass
    except OSError as err:
        raise _CommandError(f"--out {out} is not writable: {err.strerror or err} "
                            f"({type(err).__name__}); pass another --out") from err


def _check_cifar10(args) -> None:
    """Fail now when --dataset cifar10 is asked for but its files are absent or not the
    official ones (checked by md5 without reading them)."""
    if args.dataset != "cifar10":
        return
    from minires import data

    try:
        data.check_cifar10(args.data_dir)
    except (FileNotFoundError, ValueError) as err:
        raise _CommandError(str(err)) from err


_CHANNELS = {"mnist": 1, "cifar10": 3}

# Settings that must match when resuming (epochs may grow; device and output may change).
_RESUME_KEYS = ("model", "dataset", "width", "batch_size", "lr", "warmup_epochs", "seed",
                "limit_batches")
CHECKPOINT_NAME = "checkpoint.safetensors"


def _resume_state(checkpoint_path, config: dict, epochs: int) -> None:
    """Check before training that the checkpoint in --out can be resumed with these
    settings: it exists, is a minires training checkpoint (never a pickle), was trained
    with the same settings, and is not already at --epochs."""
    from minires import serialization
    from minires.train import CHECKPOINT_FORMAT

    legacy = checkpoint_path.with_name("checkpoint.pkl")
    if not checkpoint_path.exists():
        if legacy.exists():
            raise _CommandError(
                f"--resume: {checkpoint_path.parent} holds {legacy.name}, a checkpoint of an "
                "older minires. It is a pickle, which can run code when loaded, and minires "
                "no longer reads pickles. Start the run again (--overwrite), or, if you trust "
                f"the file, unpickle {legacy.name} yourself in a Python session and pass the "
                f"object to `minires.save(obj, {str(checkpoint_path)!r})`")
        raise _CommandError(f"--resume: no checkpoint at {checkpoint_path}; train without "
                            "--resume first, or pass the --out of an earlier run")
    try:
        state = serialization.load(checkpoint_path)
    except (ValueError, OSError) as err:  # truncated, foreign, a pickle, unreadable
        raise _CommandError(f"--resume: {err}") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise _CommandError(f"--resume: {checkpoint_path} is not a minires training "
                            f"checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    saved = state.get("config") or {}
    differ = [f"--{k.replace('_', '-')} {saved.get(k)!r} (now {config[k]!r})"
              for k in _RESUME_KEYS if k in saved and saved[k] != config[k]]
    if differ:
        raise _CommandError(f"--resume: {checkpoint_path} was trained with different "
                            f"settings: {'; '.join(differ)}")
    epoch = state.get("epoch")
    if isinstance(epoch, int) and epochs <= epoch:
        raise _CommandError(f"--resume --epochs {epochs}: the checkpoint {checkpoint_path} is "
                            f"already at epoch {epoch}; pass --epochs above {epoch} to train "
                            "further (--epochs counts from the start of the run)")


def train(args) -> int:
    """Train a model with the paper's CIFAR recipe; write history and checkpoint to --out."""
    from pathlib import Path

    import minires
    from minires.data import DataLoader
    from minires.train import Trainer, paper_cifar_recipe

    if args.epochs < 1 or args.batch_size < 1 or (args.limit_batches or 1) < 1:
        raise _CommandError("--epochs, --batch-size and --limit-batches must be at least 1")
    if args.width < 1:
        raise _CommandError(f"--width must be at least 1 (the first stage's channels), got "
                            f"{args.width}")
    device = _check_device(args.device)
    out = Path(args.out or f"runs/{args.model}-{args.dataset}-seed{args.seed}")
    checkpoint_path = out / CHECKPOINT_NAME
    config = {key: getattr(args, key) for key in _RESUME_KEYS + ("epochs",)}
    if args.resume:
        _resume_state(checkpoint_path, config, args.epochs)
    elif checkpoint_path.exists() and not args.overwrite:
        raise _CommandError(f"{checkpoint_path} already exists: pass --resume to continue it, "
                            "--overwrite to start again, or another --out")

    minires.manual_seed(args.seed)
    # MNIST: 1x28x28, CIFAR-10: 3x32x32; 10 classes each.  The model first: a bad name
    # fails before CIFAR-10 is read, and before --out is created.
    model = _build_model(args.model, args.width, in_channels=_CHANNELS[args.dataset],
                         num_classes=10)
    _check_cifar10(args)
    _check_writable(out)
    (x, y), (x_test, y_test), transform = _load_data(args)
    train_loader = DataLoader((x, y), args.batch_size, shuffle=True, transform=transform,
                              seed=args.seed)
    test_loader = DataLoader((x_test, y_test), args.batch_size, seed=args.seed)
    try:
        optimizer, scheduler = paper_cifar_recipe(model, len(train_loader), args.epochs,
                                                  lr=args.lr, warmup_epochs=args.warmup_epochs)
    except ValueError as err:
        raise _CommandError(str(err)) from err
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      scheduler_interval="step", device=device,
                      checkpoint_path=checkpoint_path, history_path=out / "history.json",
                      progress=not args.no_progress, config=config)
    print(f"{args.model} ({model.num_parameters():,} parameters) on {args.dataset}: "
          f"{len(x)} training / {len(x_test)} test images, {len(train_loader)} iterations "
          f"per epoch, device {device}; writing to {out}")
    if args.resume:
        try:
            epoch = trainer.resume(checkpoint_path)
        except (KeyError, ValueError) as err:  # built differently from the saved run
            raise _CommandError(f"--resume: cannot continue {checkpoint_path}: {err}") from err
        print(f"resumed from {checkpoint_path} at epoch {epoch}")
    try:
        history = trainer.fit(args.epochs)
    except OSError as err:  # e.g. the disk filled up: the last checkpoint is still whole
        raise _CommandError(f"could not write to {out}: {err}; the checkpoint on disk holds "
                            f"the last completed epoch ({trainer.epoch})") from err
    last = history[-1]
    print(f"final (epoch {last['epoch']}): train error {last['train_error']:.2%} (during "
          f"training), test error {last['test_error']:.2%}; "
          f"{sum(history['epoch_time']) / len(history):.1f} s per epoch")
    print(f"wrote {out / 'history.json'}, {out / 'history.csv'}, {checkpoint_path}")
    return 0


def demo(args) -> int:
    """Run one demonstration (or all) and write figures, JSON and report.md into --out."""
    from minires.experiments import available_demos, pretrain, run_demo
    from minires.experiments.common import DemoConfig, write_text

    names = available_demos() if args.name == "all" else [args.name]
    device = _check_device(args.device)  # every demonstration, even one that runs on the CPU
    _check_cifar10(args)
    config = DemoConfig(mode="full" if args.full else "quick", dataset=args.dataset,
                        device=device, seed=args.seed, out=args.out,
                        data_dir=args.data_dir, progress=not args.no_progress)
    _check_writable(config.out)
    jobs = args.jobs if args.jobs is not None else _default_jobs(device)
    if jobs < 1:
        raise _CommandError(f"--jobs must be at least 1, got {jobs}")
    start = time.perf_counter()
    trained = pretrain(names, config, jobs)
    if trained:
        print(f"   trained {trained} nets in {jobs} processes in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    for name in names:
        print(f"== demo {name} ({config.mode}, {config.dataset}, {config.device})", flush=True)
        result = run_demo(name, config)
        for verdict in result.verdicts:
            print(f"   {verdict.word:>13}: {verdict.claim}")
        print(f"   ({result.wall_time_s:.1f} s)", flush=True)
    seconds = time.perf_counter() - start
    # How the whole run went, for tools/update_docs.py: the demonstrations' own JSON files
    # do not count the nets trained beforehand.
    write_text(config.out / "run.json", json.dumps({
        "demos": names, "seconds": seconds, "jobs": jobs, "nets_pretrained": trained,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}, indent=2))
    print(f"wrote {config.out / 'report.md'} in {seconds:.0f} s")
    return 0


def _default_jobs(device: str) -> int:
    """Training processes for ``demo``: one per core on the CPU (at most 4), one on a GPU."""
    if device != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def check(args) -> int:
    """Grade a solution of an exercise (tutorials/exercises/) against minires's kernels."""
    from minires.exercises import cli

    try:
        return cli.check_main(args)
    except cli.UsageError as err:
        raise _CommandError(str(err)) from err


def grade_submissions(args) -> int:
    """Grade a class: every student folder, every exercise; write a CSV (and JSON) table."""
    from minires.exercises import cli

    try:
        return cli.grade_main(args)
    except cli.UsageError as err:
        raise _CommandError(str(err)) from err


def export(args) -> int:
    """Convert saved weights for another tool: a torch state dict, an ONNX graph, or a
    safetensors state dict (see ``python -m minires export --help``)."""
    from pathlib import Path

    import numpy as np

    from minires import interop, models, serialization

    out = Path(args.out)
    suffix = {"torch": ".pt", "onnx": ".onnx", "safetensors": ".safetensors"}[args.to]
    if out.suffix != suffix:
        raise _CommandError(f"--to {args.to} writes a {suffix} file; --out is {out}")
    if args.width is not None and args.width < 1 or (args.input_size or 1) < 1:
        raise _CommandError("--width and --input-size must be at least 1")
    try:
        state = serialization.load_state_dict(args.weights)
        model = interop.model_for_state_dict(args.model, state, args.width)
    except (OSError, ValueError, TypeError, ImportError) as err:
        raise _CommandError(f"cannot load {args.weights} as {args.model}: {err}") from err
    try:
        if args.to == "safetensors":
            serialization.save(model.state_dict(), out)
            usage = "minires.load / safetensors.torch.load_file"
        elif args.to == "onnx":
            channels = model.conv1.in_channels
            imagenet = args.model.lower().replace("-", "") in models.IMAGENET_MODEL_NAMES
            size = args.input_size or (224 if imagenet else 28 if channels == 1 else 32)
            example = np.zeros((1, channels, size, size), np.float32)
            interop.export_onnx(model, example, out, opset=args.opset)
            usage = f"onnxruntime.InferenceSession; input 'input' (N, {channels}, {size}, " \
                    f"{size}), output 'logits'"
        else:
            import torch  # interop.to_torch has already checked that it imports

            from minires.serialization import atomic_write

            state_dict = interop.to_torch(model).state_dict()
            atomic_write(out, lambda file: torch.save(state_dict, file))
            usage = ("twin.load_state_dict(torch.load(path, weights_only=True)) into "
                     "minires.interop.to_torch(model) or torchvision's ResNet")
    except (ImportError, ValueError, TypeError, OSError) as err:
        raise _CommandError(f"cannot write {out}: {err}") from err
    print(f"wrote {out}: {args.model} ({model.num_parameters():,} parameters, "
          f"{len(model.state_dict())} tensors) for {usage}")
    return 0


# What Ctrl-C leaves behind, per command (the others write nothing worth a word).
_INTERRUPTED = {
    "train": "the files in --out hold the last completed epoch, if any (continue with "
             "--resume)",
    "demo": "--out holds the demonstrations that finished (report.md lists them)",
    "grade": "grading did not finish; --csv and --json are written only when it does",
    "export": "nothing was written (the file is written whole or not at all)",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minires", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quick = commands.add_parser("quickstart", help="train a tiny net with raw autograd")
    quick.add_argument("--steps", type=int, default=300)
    quick.add_argument("--lr", type=float, default=0.5)
    quick.add_argument("--seed", type=int, default=0)
    quick.set_defaults(run=quickstart)

    fit = commands.add_parser(
        "train", help="train a model with the paper's CIFAR recipe",
        description="Train with SGD (momentum 0.9, weight decay 1e-4), the learning rate "
        "divided by 10 at 50% and 75% of training; write history.json, history.csv and "
        f"{CHECKPOINT_NAME} (safetensors + JSON; never a pickle) into --out after every "
        "epoch.")
    fit.add_argument("--model", required=True, help="e.g. resnet20, plain20, resnet56")
    fit.add_argument("--epochs", type=int, required=True,
                     help="total epochs; with --resume, train on up to this epoch (the "
                     "learning-rate schedule stays that of the original run)")
    fit.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist",
                     help="mnist: the embedded 4,000/1,000-digit subset (default); "
                     "cifar10: with pad-4 crop + flip augmentation")
    fit.add_argument("--data-dir", default=None,
                     help="directory holding cifar-10-batches-py (default $MINIRES_CIFAR10, "
                     "else ~/.minires/data)")
    fit.add_argument("--batch-size", type=int, default=128)
    fit.add_argument("--lr", type=float, default=0.1)
    fit.add_argument("--warmup-epochs", type=float, default=0,
                     help="linear warm-up from lr/10 over this many epochs (default 0)")
    fit.add_argument("--width", type=int, default=16,
                     help="channels of the first stage; stages have width, 2x, 4x (paper: 16)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="cpu", help="cpu or cuda")
    fit.add_argument("--out", default=None,
                     help="output directory (default runs/<model>-<dataset>-seed<seed>)")
    fit.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint in --out")
    fit.add_argument("--overwrite", action="store_true",
                     help="start again even if --out already holds a checkpoint")
    fit.add_argument("--limit-batches", type=int, default=None,
                     help="use only this many batches per epoch (smoke tests)")
    fit.add_argument("--no-progress", action="store_true",
                     help="one line per epoch instead of a progress bar")
    fit.set_defaults(run=train)

    show = commands.add_parser(
        "demo", help="run the demonstrations of the ResNet paper's claims",
        description="Measure a claim of the ResNet paper and write figures (PNG), every "
        "number (JSON) and a section of report.md into --out.")
    show.add_argument("name", choices=list(DEMO_ORDER) + ["all"])
    size = show.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="embedded MNIST, small nets: minutes on a laptop CPU (default)")
    size.add_argument("--full", action="store_true",
                      help="the paper's recipe and sizes (meant for a GPU)")
    show.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    show.add_argument("--data-dir", default=None, help="directory holding cifar-10-batches-py")
    show.add_argument("--device", default="cpu", help="cpu or cuda")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--out", default="minires-out", help="output directory")
    show.add_argument("--no-progress", action="store_true", help="no progress bars")
    show.add_argument("--jobs", type=int, default=None,
                      help="train the demonstrations' nets in this many processes first, "
                      "one BLAS thread each (default: one per core, at most 4; 1 on a "
                      "GPU; 1 = train each net when a demonstration needs it)")
    show.set_defaults(run=demo)

    checker = commands.add_parser(
        "check", help="check your solution of an exercise (tutorials/exercises/)",
        description="Run your solution of an exercise against minires's own kernels on "
        "random inputs (and a numerical gradient check for backward passes) and explain "
        "every difference.  Exit code 0 only when every check passes.")
    checker.add_argument("exercise", nargs="?", help="the exercise's name (see --list)")
    checker.add_argument("--file", default=None,
                       help="your solution (default: tutorials/exercises/<exercise>.py)")
    checker.add_argument("--dir", default=None,
                       help="a folder holding solutions under the stubs' file names")
    checker.add_argument("--list", action="store_true",
                       help="list every exercise with its status (not started / failing / "
                       "passing); exit code 0 only when all pass")
    checker.add_argument("--seed", type=int, default=0, help="seed of the random test inputs")
    checker.add_argument("--timeout", type=float, default=None,
                       help="seconds each case may take (default 10)")
    checker.add_argument("--catalog", action="append", default=[], metavar="DIR",
                       help="a folder of a course's own exercises (repeatable)")
    checker.set_defaults(run=check)

    convert = commands.add_parser(
        "export", help="convert saved weights for PyTorch, ONNX or safetensors",
        description="Read WEIGHTS (a .safetensors state dict saved by minires.save, or the "
        "checkpoint.safetensors that `minires train` writes), rebuild --model around them "
        "(input channels, width and classes are read off the weights) and write --out. "
        "--to torch: a torch state dict (.pt, torch's own format, read with "
        "torch.load(path, weights_only=True)); --to onnx: the eval-mode graph (.onnx); "
        "--to safetensors: the model's state dict (.safetensors, torchvision's keys).")
    convert.add_argument("weights", help="a .safetensors state dict or training checkpoint")
    convert.add_argument("--model", required=True, help="e.g. resnet20, plain56, resnet18")
    convert.add_argument("--width", type=int, default=None,
                         help="CIFAR models: channels of the first stage (default: read off "
                         "the weights; if given, must agree)")
    convert.add_argument("--to", required=True, choices=("torch", "onnx", "safetensors"))
    convert.add_argument("--out", required=True, help="the file to write (.pt, .onnx or "
                         ".safetensors, by --to)")
    convert.add_argument("--input-size", type=int, default=None,
                         help="onnx: height = width of the example input (default 224 for "
                         "ImageNet models, 28 for 1-channel and 32 for 3-channel CIFAR ones)")
    convert.add_argument("--opset", type=int, default=17, help="onnx: operator set (17)")
    convert.set_defaults(run=export)

    grader = commands.add_parser(
        "grade", help="grade a class: one folder per student, a CSV row per exercise",
        description="Check every student's solutions (SUBMISSIONS_DIR/<student>/<stub name>) "
        "in separate processes with a per-case timeout; write one row per student and "
        "exercise: status (pass, fail, error, timeout, missing), checks passed / total, "
        "seconds.  Exit code 0 whenever grading ran, whatever the scores.")
    grader.add_argument("submissions", metavar="SUBMISSIONS_DIR")
    grader.add_argument("--exercises", default=None,
                       help="comma-separated exercise names (default: all)")
    grader.add_argument("--timeout", type=float, default=None,
                       help="seconds each case may take (default 10)")
    grader.add_argument("--csv", required=True, metavar="OUT.csv", help="the table to write")
    grader.add_argument("--json", default=None, metavar="OUT.json",
                       help="also write the rows as JSON")
    grader.add_argument("--catalog", action="append", default=[], metavar="DIR",
                       help="a folder of a course's own exercises (repeatable)")
    grader.add_argument("--seed", type=int, default=0, help="seed of the random test inputs")
    grader.add_argument("--jobs", type=int, default=1,
                       help="check this many of a student's exercises at once (default 1)")
    grader.set_defaults(run=grade_submissions)

    args = parser.parse_args(argv)
    from minires.train import TrainingDiverged

    try:
        return args.run(args)
    except _CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:  # not a mistake in the command line: exit code 1
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        left = _INTERRUPTED.get(args.command)
        print("error: interrupted" + (f"; {left}" if left else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
