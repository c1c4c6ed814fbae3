"""Command line: ``python -m minires COMMAND``.  Run with ``--help`` for the commands."""

import argparse
import sys

import numpy as np


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minires", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quick = commands.add_parser("quickstart", help="train a tiny net with raw autograd")
    quick.add_argument("--steps", type=int, default=300)
    quick.add_argument("--lr", type=float, default=0.5)
    quick.add_argument("--seed", type=int, default=0)
    quick.set_defaults(run=quickstart)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
