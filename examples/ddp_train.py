"""When one machine is not enough: continue a minires model under PyTorch DDP.

minires has no distributed engine of its own, on purpose: data-parallel training is a solved
problem, and the model crosses to PyTorch unchanged.  This script

1. builds a minires model by name (or loads one from a ``.safetensors`` state dict or
   ``minires train`` checkpoint),
2. converts it with ``minires.interop.to_torch`` (same state-dict keys, same outputs),
3. trains it with ``torch.nn.parallel.DistributedDataParallel`` over ``--nproc`` processes
   (gloo on the CPU, NCCL on GPUs; the rendezvous is on 127.0.0.1), each process taking its
   share of every global batch of the embedded MNIST subset or CIFAR-10,
4. converts the result back with ``minires.interop.from_torch`` and saves it as a
   ``.safetensors`` state dict, which ``minires.load``, ``python -m minires export`` and the
   demonstrations' analyses read.

    python examples/ddp_train.py --nproc 2 --steps 3                  # 2 CPU processes
    python examples/ddp_train.py --nproc 4 --device cuda --dataset cifar10 --steps 2000
    python examples/ddp_train.py --checkpoint runs/x/checkpoint.safetensors --model resnet20

What keeps the ranks equal: every rank starts from the same weights (DDP broadcasts rank
0's at construction), DDP all-reduces (averages) the gradients in backward, so every rank
takes the same SGD step.  BatchNorm's running statistics are computed from each rank's own
share, so they are averaged over the ranks at the end.  Every rank then prints a SHA-256 of
its weights: they must all be the same.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import time
import warnings
from pathlib import Path

import numpy as np

try:
    import minires
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import minires

from minires import interop, models
from minires.serialization import load_state_dict


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20", help="a minires model name (resnet20)")
    parser.add_argument("--checkpoint", default=None,
                        help="start from these weights (.safetensors state dict or training "
                        "checkpoint) instead of a fresh --model")
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    parser.add_argument("--data-dir", default=None, help="folder of cifar-10-batches-py")
    parser.add_argument("--width", type=int, default=8,
                        help="first-stage channels of a fresh CIFAR model (paper: 16)")
    parser.add_argument("--nproc", type=int, default=2, help="number of processes (ranks)")
    parser.add_argument("--steps", type=int, default=100, help="SGD steps")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="global batch, split evenly over the ranks")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: gloo; cuda: NCCL, one GPU per rank")
    parser.add_argument("--out", default="ddp-out/model.safetensors",
                        help="where the trained minires state dict is saved")
    args = parser.parse_args(argv)
    if args.nproc < 1 or args.steps < 1 or args.batch_size < args.nproc:
        parser.error("--nproc and --steps must be >= 1 and --batch-size >= --nproc")
    if Path(args.out).suffix != ".safetensors":
        parser.error(f"--out must end in .safetensors, got {args.out}")
    return args


def say(text: str) -> None:
    """Print one whole line in one write, so that the ranks' lines never interleave."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def weights_digest(state: dict) -> str:
    """SHA-256 over a state dict's keys and bytes, in sorted key order (same weights, same
    digest, whichever framework held them)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(state[key]).tobytes())
    return digest.hexdigest()


def load_data(args):
    """(images (N, C, H, W) float32, labels (N,) int64) of the training split."""
    from minires import data

    if args.dataset == "mnist":
        return data.load_mnist("train", dtype=np.float32)
    return data.load_cifar10(args.data_dir, "train", dtype=np.float32)


def build_model(args, in_channels: int):
    """The minires model every rank starts from (identical on every rank)."""
    if args.checkpoint:
        return interop.model_for_state_dict(args.model, load_state_dict(args.checkpoint))
    minires.manual_seed(args.seed)
    settings = {"in_channels": in_channels, "num_classes": 10}
    if args.model not in models.IMAGENET_MODEL_NAMES:
        settings["widths"] = (args.width, 2 * args.width, 4 * args.width)
    return models.get_model(args.model, **settings)


def worker(rank: int, args, port: int) -> None:
    """One rank: join the group, train its share of every batch, check, save (rank 0)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    # torch warns when a 1-input-channel conv's gradient has other (equivalent) strides for
    # its size-1 dimension than DDP's bucket: harmless, and not ours to fix.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
    cuda = args.device == "cuda"
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.nproc))
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=args.nproc)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    images, labels = load_data(args)
    model = build_model(args, in_channels=images.shape[1])
    twin = interop.to_torch(model).to(device).train()
    ddp = DistributedDataParallel(twin, device_ids=[rank] if cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)  # the same on every rank: the same global batches
    if rank == 0:
        say(f"{args.model}: {model.num_parameters():,} parameters, {args.nproc} ranks "
              f"({'NCCL' if cuda else 'gloo'}), global batch {args.batch_size}, start sha256 "
              f"{weights_digest(model.state_dict())[:16]}")
    for step in range(1, args.steps + 1):
        batch = rng.choice(len(images), args.batch_size, replace=False)
        mine = batch[rank::args.nproc]  # this rank's share of the global batch
        x = torch.from_numpy(images[mine]).to(device)
        y = torch.from_numpy(labels[mine]).to(device)
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over the ranks here
        optimizer.step()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        if rank == 0 and (step == 1 or step == args.steps or step % 50 == 0):
            say(f"step {step}: loss {mean_loss.item() / args.nproc:.4f}")

    with torch.no_grad():  # running statistics: each rank saw only its share
        for buffer in twin.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= args.nproc
    state = {k: v.detach().cpu().numpy() for k, v in twin.state_dict().items()}
    flat = torch.cat([v.detach().double().flatten() for v in twin.state_dict().values()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    difference = (flat - reference).abs().max().item()
    say(f"rank {rank}: weights sha256 {weights_digest(state)[:16]}, max |difference| from "
          f"rank 0 = {difference:g}")
    if rank == 0:
        back = interop.from_torch(twin.cpu(), model)  # strictly by key and shape
        path = minires.save(back.state_dict(), args.out)
        say(f"saved {path} (sha256 {weights_digest(back.state_dict())[:16]}); analyse it with "
              f"minires, or: python -m minires export {path} --model {args.model} --to onnx "
              f"--out model.onnx")
    # Tear down together: a rank that destroys its gloo group while rank 0 (which hosts the
    # rendezvous store) is still saving can abort with "terminate called without an active
    # exception" (seen once in CI).
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the rendezvous (nothing leaves this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
        import torch.multiprocessing as mp
    except ImportError:
        print("error: this example needs PyTorch: pip install 'minires[torch]' (or "
              "pip install torch==2.13.0)", file=sys.stderr)
        return 2
    if args.device == "cuda" and torch.cuda.device_count() < args.nproc:
        print(f"error: --device cuda needs one GPU per rank: {args.nproc} ranks, "
              f"{torch.cuda.device_count()} GPUs", file=sys.stderr)
        return 2
    try:  # fail here, in one process, rather than in every rank
        build_model(args, in_channels=load_data(args)[0].shape[1])
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    mp.spawn(worker, args=(args, free_port()), nprocs=args.nproc, join=True)
    say(f"done: {args.steps} steps on {args.nproc} ranks in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
